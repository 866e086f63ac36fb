"""Every shipped counter-terms file, at every order it holds, against a fresh per-k derivation.

The shipped files are loaded as data (not through the cache, which would derive again if a file
were stale) and their closed forms evaluated exactly at a rational beta and several pieces k,
drawn with a fixed seed; the per-k recurrence run afresh must give the same exact values on
every tree.  Order 8 has 286 trees; a small denominator keeps the exact recurrence fast.
"""

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

import hbflow
from hbflow import CounterTerms, coefficients_up_to, trees_up_to

SHIPPED = sorted((Path(hbflow.__file__).parent / "_data").glob("counter_terms_*.json"))


def test_every_method_is_shipped():
    assert {p.name.split("_")[2] for p in SHIPPED} == {"hb", "nag", "gd", "nesterov", "qhm"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_file_equals_fresh_per_k_derivation(path):
    shipped = CounterTerms.from_data(json.loads(path.read_text()))
    nu = "" if shipped.nu is None else f"_nu{shipped.nu.numerator}-{shipped.nu.denominator}"
    assert path.name == f"counter_terms_{shipped.method}{nu}_order{shipped.order}.json"
    assert shipped.trees == trees_up_to(shipped.order)
    rng = random.Random(f"shipped {path.name}")
    if shipped.method == "gd":
        beta, k_max = None, 0  # one character for every k
    else:
        beta = Fraction(rng.randint(1, 8), 9)
        k_max = rng.randint(3, 6)
    fresh = coefficients_up_to(
        shipped.order, k_max, method=shipped.method, beta=beta, nu=shipped.nu, as_sympy=False
    )
    for k, values in enumerate(fresh):
        at = shipped.at(k, beta=beta, as_sympy=False)
        wrong = [t.level_sequence for t in shipped.trees if at[t] != values[t]]
        assert not wrong, f"{path.name}, beta = {beta}, k = {k}: {len(wrong)} trees, {wrong[:3]}"


SCRATCH_ORDER = 7


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_file_equals_derivation_from_scratch(path):
    # The closed form derived afresh (no cache) must equal the shipped file coefficient by
    # coefficient.  The file's own checksum is verified, but not its derivation version: this
    # compares the numbers even while the files await a restamp after a change of the code.
    from hbflow._counter_terms import (
        _FORMAT,
        DERIVATION_VERSION,
        _checksum,
        check_file_data,
        derive_counter_terms,
    )

    data = json.loads(path.read_text())
    check_file_data(data, "counter-terms", _FORMAT, data["derivation_version"])
    data["derivation_version"] = DERIVATION_VERSION
    data["checksum"] = _checksum(data)
    shipped = CounterTerms.from_data(data).truncate(SCRATCH_ORDER)
    derived = derive_counter_terms(SCRATCH_ORDER, shipped.method, nu=shipped.nu, progress=False)
    fresh = CounterTerms.from_data(json.loads(json.dumps(derived.to_data())))  # plain JSON data
    assert fresh.trees == shipped.trees
    wrong = [
        t.level_sequence
        for t in shipped.trees
        if fresh.exponential_terms(t) != shipped.exponential_terms(t)
    ]
    assert not wrong, f"{path.name}: {len(wrong)} trees differ, {wrong[:3]}"
