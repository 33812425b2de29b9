"""The protocol language: a few lines that say what an experiment computes.

    # a cooling curve
    input k = 0.3                 # a named number
    input start = 90
    simulate 50 dt 0.5            # 50 steps; t = 0, 0.5, 1, ... (dt defaults to 1)
    output temperature = 20 + (start - 20) * exp(-k * t)
    output rate = -k * (temperature - 20)

One statement per line; `#` starts a comment; blank lines are ignored.

- `input NAME = NUMBER`: a named constant.
- `output NAME = EXPRESSION`: a column of the output, one value per step. The expression uses
  numbers, `+ - * / **`, parentheses, the inputs, `t`, the outputs of earlier lines and the
  functions in FUNCTIONS.
- `simulate STEPS [dt NUMBER]`: exactly once; STEPS from 1 to MAX_STEPS.

Expressions are parsed with Python's ast module and only the node types above are accepted;
they are evaluated by walking that tree in floating point (never eval or compile), so `**`
overflows into an error instead of building a huge integer.
"""
import ast
import math
import re
from dataclasses import dataclass, field

MAX_LENGTH = 65536
MAX_LINE = 500
MAX_STEPS = 100000
MAX_NAME = 32
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")
INTEGER = re.compile(r"\d+\Z")

FUNCTIONS = {
    "abs": (1, abs),
    "sqrt": (1, math.sqrt),
    "exp": (1, math.exp),
    "log": (1, math.log),
    "sin": (1, math.sin),
    "cos": (1, math.cos),
    "tan": (1, math.tan),
    "min": (2, min),
    "max": (2, max),
}
RESERVED = {"t", "input", "output", "simulate", "dt"} | set(FUNCTIONS)
BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    # math.pow, not **: a negative base with a fractional exponent is a domain error, not complex.
    ast.Pow: math.pow,
}
UNARY = {ast.UAdd: lambda a: +a, ast.USub: lambda a: -a}


class EvaluationError(Exception):
    """An output could not be computed (division by zero, overflow, a math domain error)."""


@dataclass
class Output:
    name: str
    expression: str
    line: int
    tree: ast.AST = field(repr=False)


@dataclass
class Protocol:
    inputs: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    steps: int = 0
    dt: float = 1.0
    errors: list = field(default_factory=list)

    @property
    def valid(self):
        return not self.errors

    def interface(self):
        """The inputs with their values, the outputs with their expressions, the steps."""
        return {
            "inputs": [{"name": name, "value": value} for name, value in self.inputs.items()],
            "outputs": [{"name": output.name, "expression": output.expression} for output in self.outputs],
            "steps": self.steps,
            "dt": self.dt,
        }

    def rows(self):
        """Yield (t, {output: value}) for every step; raises EvaluationError."""
        for step in range(self.steps):
            t = step * self.dt
            names = dict(self.inputs, t=t)
            values = {}
            for output in self.outputs:
                try:
                    value = evaluate(output.tree, names)
                except (ArithmeticError, ValueError) as exc:
                    raise EvaluationError("line %d: output %s at t=%g: %s" % (output.line, output.name, t, exc)) from None
                if not math.isfinite(value):
                    raise EvaluationError("line %d: output %s at t=%g: not a finite number" % (output.line, output.name, t))
                names[output.name] = values[output.name] = value
            yield t, values


def parse(text):
    """Parse a protocol; the result's errors list [{"line": n, "message": ...}], empty when valid."""
    protocol = Protocol()
    if not isinstance(text, str):
        protocol.errors.append({"line": 0, "message": "the protocol must be a string"})
        return protocol
    if len(text) > MAX_LENGTH:
        protocol.errors.append({"line": 0, "message": "the protocol is longer than %d characters" % MAX_LENGTH})
        return protocol
    simulate_line = None
    outputs_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue

        def error(message, line_number=number):
            protocol.errors.append({"line": line_number, "message": message})

        keyword, rest = line.partition(" ")[::2]
        rest = rest.strip()
        outputs_seen = outputs_seen or keyword == "output"
        if len(line) > MAX_LINE:
            error("the line is longer than %d characters" % MAX_LINE)
            continue
        if keyword in ("input", "output"):
            name, equals, value = rest.partition("=")
            name, value = name.strip(), value.strip()
            if not equals or not value:
                error("expected `%s NAME = %s`" % (keyword, "NUMBER" if keyword == "input" else "EXPRESSION"))
                continue
            problem = name_problem(name, protocol)
            if problem:
                error(problem)
                continue
            if keyword == "input":
                if not NUMBER.match(value):
                    error("input %s: %r is not a number" % (name, value))
                    continue
                parsed = float(value)
                if not math.isfinite(parsed):
                    error("input %s: %r is not a finite number" % (name, value))
                    continue
                protocol.inputs[name] = parsed
            else:
                known = set(protocol.inputs) | {output.name for output in protocol.outputs} | {"t"}
                tree, problem = compile_expression(value, known)
                if problem:
                    error("output %s: %s" % (name, problem))
                    continue
                protocol.outputs.append(Output(name=name, expression=value, line=number, tree=tree))
        elif keyword == "simulate":
            words = rest.split()
            if simulate_line is not None:
                error("simulate appears twice (first on line %d)" % simulate_line)
                continue
            simulate_line = number
            if len(words) not in (1, 3) or (len(words) == 3 and words[1] != "dt"):
                error("expected `simulate STEPS` or `simulate STEPS dt NUMBER`")
                continue
            if not INTEGER.match(words[0]) or not 1 <= int(words[0]) <= MAX_STEPS:
                error("simulate: STEPS must be a whole number from 1 to %d, got %r" % (MAX_STEPS, words[0]))
                continue
            protocol.steps = int(words[0])
            if len(words) == 3:
                if not NUMBER.match(words[2]) or not 0 < float(words[2]) < math.inf:
                    error("simulate: dt must be a positive number, got %r" % words[2])
                    continue
                protocol.dt = float(words[2])
        else:
            error("unknown statement %r (expected input, output or simulate)" % keyword)
    if simulate_line is None:
        protocol.errors.append({"line": 0, "message": "no `simulate STEPS` line"})
    if not outputs_seen:
        protocol.errors.append({"line": 0, "message": "no `output NAME = EXPRESSION` line"})
    return protocol


def name_problem(name, protocol):
    """Why name cannot be declared, or None."""
    if not NAME.match(name):
        return "%r is not a name (letters, digits and _, not starting with a digit)" % name
    if len(name) > MAX_NAME:
        return "the name %s is longer than %d characters" % (name, MAX_NAME)
    if name in RESERVED:
        return "%s is reserved" % name
    if name in protocol.inputs or any(output.name == name for output in protocol.outputs):
        return "%s is declared twice" % name
    return None


def compile_expression(text, known):
    """Return (tree, None) for an acceptable expression, (None, message) otherwise."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return None, "syntax error (%s)" % exc.msg
    except (ValueError, RecursionError, MemoryError):
        return None, "the expression cannot be parsed"
    try:
        check(tree.body, known, depth=0)
    except ValueError as exc:
        return None, str(exc)
    return tree.body, None


def check(node, known, depth):
    """Raise ValueError naming the first thing the language does not allow."""
    if depth > 50:
        raise ValueError("the expression is nested too deeply")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError("only numbers are allowed, not %r" % (node.value,))
        try:
            finite = math.isfinite(float(node.value))
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError("the number %.20s is too large" % node.value)
        return
    if isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise ValueError("%s is a function: call it as %s(...)" % (node.id, node.id))
        if node.id not in known:
            raise ValueError("unknown name %s (inputs, t and earlier outputs only)" % node.id)
        return
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        check(node.left, known, depth + 1)
        check(node.right, known, depth + 1)
        return
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        check(node.operand, known, depth + 1)
        return
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        arity = FUNCTIONS[node.func.id][0]
        if node.keywords or len(node.args) != arity:
            raise ValueError("%s takes %d argument%s" % (node.func.id, arity, "" if arity == 1 else "s"))
        for argument in node.args:
            check(argument, known, depth + 1)
        return
    raise ValueError("%s is not allowed (numbers, names, + - * / **, parentheses and %s only)"
                     % (ast_label(node), ", ".join(sorted(FUNCTIONS))))


def ast_label(node):
    """A short description of a node the language refuses."""
    segment = getattr(node, "op", None)
    return "the operator %s" % type(segment).__name__ if segment is not None else type(node).__name__


def evaluate(node, names):
    """The value of a checked expression tree, in floating point."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.BinOp):
        return float(BINARY[type(node.op)](evaluate(node.left, names), evaluate(node.right, names)))
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](evaluate(node.operand, names))
    if isinstance(node, ast.Call):
        function = FUNCTIONS[node.func.id][1]
        return float(function(*(evaluate(argument, names) for argument in node.args)))
    raise ValueError("unexpected node %s" % type(node).__name__)
