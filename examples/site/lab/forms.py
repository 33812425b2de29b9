"""Forms of the lab app."""
from django import forms

from lab.models import Experiment


class ExperimentForm(forms.ModelForm):
    class Meta:
        model = Experiment
        fields = ["name"]
