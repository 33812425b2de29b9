"""Bad weblab.stack.memcached input fails before any work, with a message naming the variable."""

import pytest

BAD_INPUT = [
    pytest.param({"memcached_max_item_size": "lots"}, "memcached_max_item_size", "is not a size",
                 id="item-size-not-a-size"),
    pytest.param({"memcached_max_item_size": "2mb"}, "memcached_max_item_size", "is not a size",
                 id="item-size-unknown-unit"),
    pytest.param({"memcached_max_item_size": "0k"}, "memcached_max_item_size", "1k to 1024m",
                 id="item-size-zero"),
    pytest.param({"memcached_max_item_size": "2048m", "memcached_memory_mb": 8192},
                 "memcached_max_item_size", "1k to 1024m", id="item-size-above-1024m"),
    pytest.param({"memcached_max_item_size": "1000k"}, "memcached_max_item_size", "multiple of 512k",
                 id="item-size-not-a-slab-chunk-multiple"),
    pytest.param({"memcached_max_item_size": "100k"}, "memcached_max_item_size", "multiple of 512k",
                 id="item-size-below-a-slab-chunk"),
    pytest.param({"memcached_max_item_size": "3m", "memcached_memory_mb": 4},
                 "memcached_max_item_size", "half of memcached_memory_mb", id="item-size-above-half-memory"),
    pytest.param({"memcached_port": "eleven"}, "memcached_port", "memcached_port", id="port-not-a-number"),
    pytest.param({"memcached_port": 70000}, "memcached_port", "1 to 65535", id="port-out-of-range"),
    pytest.param({"memcached_threads": 0}, "memcached_threads", "memcached_threads", id="no-threads"),
    pytest.param({"memcached_listen_addresses": []}, "memcached_listen_addresses", "every interface",
                 id="no-listen-address"),
    pytest.param({"memcached_listen_addresses": "127.0.0.1,10.0.0.5"}, "memcached_listen_addresses",
                 "without spaces or commas", id="listen-addresses-as-one-string"),
    pytest.param({"memcached_memory_mb": "plenty"}, "memcached_memory_mb", "memcached_memory_mb",
                 id="memory-not-a-number"),
]


@pytest.mark.parametrize(("variables", "named", "says"), BAD_INPUT)
def test_bad_input_fails_before_any_work(refusals, variables, named, says):
    refusals.of(variables).assert_refused(named, says)


@pytest.mark.parametrize("size", ["512k", "1m", "1536k", "2M", "2097152", "16m"])
def test_good_item_sizes_pass_validation(run_role, size):
    """The same harness accepts sizes memcached starts with, so the failures above are about the input."""
    result = run_role("memcached", {"memcached_max_item_size": size, "memcached_memory_mb": 32},
                      "--tags", "memcached_validate")
    assert result.returncode == 0, result.output
    assert "Validating arguments against arg spec" in result.stdout
    assert "Check the item size is at most half of the memory" in result.stdout


def test_largest_item_size_passes_with_enough_memory(run_role):
    result = run_role("memcached", {"memcached_max_item_size": "1024m", "memcached_memory_mb": 2048},
                      "--tags", "memcached_validate")
    assert result.returncode == 0, result.output
