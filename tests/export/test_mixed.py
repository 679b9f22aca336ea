"""Mixed precision: named candidates, the greedy choice against an exhaustive one, and a real run
on the digits CNN whose widths, size and recipe are read back from the flatbuffer."""

import itertools
import json

import numpy as np
import pytest

import tfcompress
from tfcompress import errors
import tfcompress.export.lowbit as lowbit
import tfcompress.export.mixed as mixed
from tfcompress.export.mixed import Candidate


def _options() -> dict:
    """Three layers' widths, least error first: (bits, bytes vs float32, mse, drop, algorithm)."""
    return {
        "a": [Candidate(32, 0, 0.0, 0.0, None), Candidate(8, -300, 0.010, 0.0, "min_max"),
              Candidate(4, -450, 0.200, 1.0, "octav")],
        "b": [Candidate(32, 0, 0.0, 0.0, None), Candidate(8, -600, 0.020, 0.0, "min_max"),
              Candidate(4, -900, 0.050, 0.5, "min_max")],
        "c": [Candidate(32, 0, 0.0, 0.0, None), Candidate(8, -100, 0.001, 0.0, "min_max")],
    }


def _totals(cands, state) -> tuple:
    chosen = [cands[n][i] for n, i in state.items()]
    return sum(c.size_delta for c in chosen), sum(c.mse for c in chosen)


@pytest.mark.parametrize("allowed", [0, -50, -350, -700, -1000, -1300, -1450])
def test_the_greedy_choice_fits_its_allowance_with_the_least_error(allowed):
    cands = _options()
    state = mixed._greedy(cands, allowed)
    size, error = _totals(cands, state)
    assert size <= allowed
    feasible = [_totals(cands, dict(zip(cands, pick)))
                for pick in itertools.product(*(range(len(o)) for o in cands.values()))]
    best = min(e for s, e in feasible if s <= allowed)
    assert error == pytest.approx(best)  # on this small case: the exhaustive optimum


def test_an_allowance_no_choice_reaches_gives_no_choice():
    cands = _options()
    smallest = sum(min(c.size_delta for c in o) for o in cands.values())
    assert mixed._greedy(cands, smallest) != {}
    assert mixed._greedy(cands, smallest - 1) == {}


def test_candidates_are_named_filtered_and_sorted():
    row = {"widths": {
        32: {"supported": True, "bytes": 1000, "mse": 0.0, "drop_points": 0.0, "algorithm": None},
        8: {"supported": True, "bytes": 700, "mse": 0.01, "drop_points": 0.5, "algorithm": "min_max"},
        4: {"supported": True, "bytes": 550, "mse": 0.3, "drop_points": 4.0, "algorithm": "octav"},
        2: {"supported": False, "reason": "not finite"}}}
    got = mixed._candidates(row, (2, 4, 8, 32), None, 1000)
    assert [c.bits for c in got] == [32, 8, 4]  # least error first; unsupported int2 left out
    assert got[2] == Candidate(bits=4, size_delta=-450, mse=0.3, drop_points=4.0, algorithm="octav")
    assert [c.bits for c in mixed._candidates(row, (2, 4, 8, 32), 1.0, 1000)] == [32, 8]
    assert [c.bits for c in mixed._candidates(row, (4, 8), None, 1000)] == [8, 4]


@pytest.fixture(scope="module")
def float32(trained_cnn, digits):
    (_, _), (x, y) = digits
    return tfcompress.convert(trained_cnn, "float32"), x[:96], y[:96]


@pytest.fixture(scope="module")
def sensitivities(float32):
    f32, x, y = float32
    return mixed.sensitivity(f32, x, y, (4, 8), algorithms=("min_max",))


def test_sensitivity_measures_each_layer_alone(float32, sensitivities):
    f32, _, _ = float32
    names = [l.name for l in lowbit.weight_layers(f32)]
    assert [row["name"] for row in sensitivities["layers"]] == names
    for row in sensitivities["layers"]:
        w4, w8 = row["widths"][4], row["widths"][8]
        assert w4["supported"] and w8["supported"]
        assert w4["bytes"] < w8["bytes"] < len(f32)  # fewer bits, fewer bytes
        assert w4["mse"] >= w8["mse"] >= 0.0


def _mixed(float32, sensitivities, budget):
    f32, x, y = float32
    return mixed.mixed_precision(f32, x, y, size_budget=budget, widths=(4, 8, 32),
                                 algorithms=("min_max",), sensitivities=sensitivities)


@pytest.mark.parametrize("budget", [0.5, 0.3])
def test_mixed_precision_meets_its_budget_as_read_back(float32, sensitivities, budget):
    f32, _, _ = float32
    result = _mixed(float32, sensitivities, budget)
    assert result.bytes == len(result.flatbuffer) <= result.budget_bytes == int(budget * len(f32))
    assert result.meets_budget and result.ratio <= budget
    read_back = lowbit.layer_bits(result.flatbuffer)
    assert all(row["bits"] == row["bits_read_back"] == read_back[row["name"]]
               for row in result.layers)
    replayed = lowbit.quantize(f32, result.recipe)  # the recipe makes the same model again
    assert lowbit.layer_bits(replayed) == read_back and len(replayed) == result.bytes
    assert json.loads(json.dumps(result.to_dict(), default=str))["bytes"] == result.bytes


def test_a_smaller_budget_takes_narrower_widths_and_more_error(float32, sensitivities):
    loose, tight = (_mixed(float32, sensitivities, b) for b in (0.5, 0.3))
    loose_bits = {row["name"]: row["bits_read_back"] for row in loose.layers}
    tight_bits = {row["name"]: row["bits_read_back"] for row in tight.layers}
    assert tight.bytes < loose.bytes
    assert all(tight_bits[n] <= loose_bits[n] for n in loose_bits) and tight_bits != loose_bits
    assert tight.mse >= loose.mse


def test_a_budget_no_widths_reach_is_one_line_naming_the_smallest(float32, sensitivities):
    f32, x, y = float32
    with pytest.raises(errors.ConversionError, match="cannot be met") as e:
        mixed.mixed_precision(f32, x, y, size_budget=0.01, widths=(4, 8, 32),
                              algorithms=("min_max",), sensitivities=sensitivities)
    assert "\n" not in str(e.value) and "the smallest choice is" in str(e.value)
    with pytest.raises(errors.ConversionError, match="size_budget=0"):
        mixed.budget_bytes(0, 1000)
    assert mixed.budget_bytes(0.25, 1000) == 250 and mixed.budget_bytes(300, 1000) == 300
