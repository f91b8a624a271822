"""The search space as data: vectors, validation, sampling, moves, encoding, Ray param_space."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hytnas.errors import SpaceError
from hytnas.space import GENES, LATENT_GENES, Arch, builtin_spaces, get_space

SPACES = builtin_spaces()


def test_builtin_spaces_listed():
    assert set(SPACES) >= {"hytnas", "hytnas-tiny"}


def test_gene_order_is_the_papers():
    assert GENES == ("n2", "t3", "t4", "t5", "e1", "e2", "e3", "e4", "e5", "c1", "c2", "c3", "c4", "c5",
                     "h3", "h4", "h5", "f3", "f4", "f5", "p3", "p4", "p5")
    assert len(LATENT_GENES) == 23


def test_hytnas_choices_match_the_paper():
    s = get_space("hytnas")
    assert s.input_size == 224
    for g in ("n2", "t3", "t4", "t5"):
        assert s.choices[g] == (1, 2, 3, 4)
    for g in ("e1", "e2", "e3", "e4", "e5"):
        assert s.choices[g] == (1, 2, 4)
    assert s.choices["h3"] == (1, 2, 4) and s.choices["f4"] == (1, 1.5, 2) and s.choices["p5"] == (2, 4, 8)
    assert s.choices["c1"] == (8, 16, 24, 32)
    assert max(s.choices["c3"]) == 96 and max(s.choices["c4"]) == 128 and max(s.choices["c5"]) == 256


def test_width_chain_example_from_the_issue():
    s = get_space("hytnas")
    # u = 24, 48, 96, 144, 144 -> c = 24, 48, 96, min(144, 128), min(144, 256)
    assert (24, 48, 96, 128, 144) in s.channel_tuples
    # every channel tuple the chain rule produces is accepted, nothing else is
    expected = set()
    for c1 in (8, 16, 24, 32):
        for ms in itertools.product((1, 1.5, 2), repeat=4):
            u, cs = float(c1), [c1]
            for m, cap in zip(ms, (None, 96, 128, 256)):
                u *= m
                cs.append(int(u) if cap is None else min(int(u), cap))
            expected.add(tuple(cs))
    assert set(s.channel_tuples) == expected


@pytest.mark.parametrize("name", SPACES)
def test_sample_validate_roundtrip(name):
    s = get_space(name)
    for method in ("uniform", "sobol"):
        archs = s.sample(50, seed=3, method=method)
        assert len(set(archs)) == 50
        for a in archs:
            assert s.validate(a) == a
            v = s.to_vector(a)
            assert s.from_vector(v) == a
            assert s.from_vector([float(x) for x in v]) == a
            assert s.from_config(s.to_config(a)) == a
            assert s.from_config(s.latent(a)) == a


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_vector_roundtrip_property(name, data):
    s = get_space(name)
    vals = {g: data.draw(st.sampled_from(s.choices[g]), label=g) for g in GENES if not g.startswith("c")}
    ct = data.draw(st.sampled_from(s.channel_tuples), label="channels")
    vals.update(zip(("c1", "c2", "c3", "c4", "c5"), ct))
    a = s.validate(vals)
    assert s.from_vector(s.to_vector(a)) == a
    assert s.arch_id(a) == s.arch_id(s.from_vector(s.to_vector(a)))


@pytest.mark.parametrize("name", SPACES)
def test_sampling_is_seeded(name):
    s = get_space(name)
    for method in ("uniform", "sobol"):
        assert s.sample(20, seed=7, method=method) == s.sample(20, seed=7, method=method)
        assert s.sample(20, seed=7, method=method) != s.sample(20, seed=8, method=method)


@pytest.mark.parametrize("name", SPACES)
def test_mutate_and_neighbours_stay_in_space(name):
    s = get_space(name)
    rng = np.random.default_rng(0)
    for a in s.sample(20, seed=1):
        b = s.mutate(a, rng)
        assert b != a and s.is_valid(b)
        nb = s.neighbours(a)
        assert nb and a not in nb and len(set(nb)) == len(nb)
        for x in nb:
            assert s.is_valid(x)
            diff = [g for g in GENES if getattr(x, g) != getattr(a, g) and not g.startswith("c")]
            assert len(diff) <= 1


def test_mutate_uses_the_generator_passed_in():
    s = get_space("hytnas")
    a = s.sample(1, seed=0)[0]
    assert s.mutate(a, np.random.default_rng(5)) == s.mutate(a, np.random.default_rng(5))


@pytest.mark.parametrize("name", SPACES)
def test_encode(name):
    s = get_space(name)
    archs = s.sample(30, seed=0)
    X = s.encode(archs)
    assert X.shape == (30, 23) and X.dtype == torch.float64
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    assert torch.equal(s.encode(archs[0]), X[:1])
    # distinct archs, distinct encodings
    assert len({tuple(r) for r in X.tolist()}) == 30


@pytest.mark.parametrize("name", SPACES)
def test_nearest_inverts_encode_and_rounds_any_point(name):
    s = get_space(name)
    archs = s.sample(100, seed=1)
    X = s.encode(archs)
    assert s.nearest(X) == archs
    g = torch.Generator().manual_seed(0)
    # a perturbation below half the smallest gap between encoded choices rounds back
    gaps = [float(torch.diff(torch.tensor(sorted({float(v) for v in s.encode(s.sample(400, seed=3))[:, j].tolist()}))).min())
            for j in range(23) if len(s.choices[GENES[j]]) > 1]
    eps = 0.9 * min(gaps) / 2 / math.sqrt(5)
    noise = eps * (2 * torch.rand(X.shape, generator=g, dtype=torch.float64) - 1)
    assert s.nearest((X + noise).clamp(0, 1)) == archs
    U = torch.rand(200, 23, generator=g, dtype=torch.float64)
    near = s.nearest(U)
    assert all(s.is_valid(a) for a in near)
    # nearest: per block (choice genes; the channel tuple) no sampled arch is closer
    pool = s.encode(s.sample(300, seed=2))
    ci = [9, 10, 11, 12, 13]
    other = [i for i in range(23) if i not in ci]
    for blk in (other, ci):
        d_blk = (s.encode(near)[:, blk] - U[:, blk]).pow(2).sum(-1)
        assert bool((d_blk[:, None] <= torch.cdist(U[:, blk], pool[:, blk]).pow(2) + 1e-12).all())


@pytest.mark.parametrize("bad", [torch.zeros(3, 22), torch.zeros(23), torch.full((2, 23), math.nan)])
def test_nearest_rejects_bad_shapes(bad):
    with pytest.raises(SpaceError, match="nearest"):
        get_space("hytnas").nearest(bad)


def test_arch_id_stable_and_distinct():
    s = get_space("hytnas")
    archs = s.sample(200, seed=0)
    ids = [s.arch_id(a) for a in archs]
    assert len(set(ids)) == 200
    assert all(len(i) == 12 for i in ids)
    # the id is a hash of the canonical config: float and int genes give the same id
    a = archs[0]
    assert s.arch_id(s.from_vector([float(x) for x in s.to_vector(a)])) == ids[0]


def test_param_space_draws_are_valid():
    from search_algos.tune import param_space

    s = get_space("hytnas")
    ps = param_space(s)
    assert set(ps) == set(LATENT_GENES)
    rng = np.random.default_rng(0)
    for _ in range(50):
        cfg = {k: v.categories[int(rng.integers(len(v.categories)))] for k, v in ps.items()}
        assert s.is_valid(s.from_config(cfg))


@pytest.mark.parametrize(
    "gene,value,fragment",
    [("n2", 5, "gene n2"), ("e3", 3, "gene e3"), ("f4", 1.25, "gene f4"), ("p5", 16, "gene p5"),
     ("c1", 12, "gene c1"), ("c3", 97, "gene c3"), ("h4", "two", "gene h4")],
)
def test_bad_gene_names_the_gene(gene, value, fragment):
    s = get_space("hytnas")
    v = dict(zip(GENES, s.to_vector(s.sample(1, seed=0)[0])))
    v[gene] = value
    with pytest.raises(SpaceError) as exc:
        s.from_vector([v[g] for g in GENES])
    msg = str(exc.value)
    assert fragment in msg and "\n" not in msg


def test_bad_vector_length_and_unknown_space():
    s = get_space("hytnas")
    with pytest.raises(SpaceError, match="expected 23 genes"):
        s.from_vector([1, 2, 3])
    with pytest.raises(SpaceError, match="unknown space 'nope'"):
        get_space("nope")
    with pytest.raises(SpaceError, match="gene c2: missing"):
        s.validate({g: 1 for g in GENES if g != "c2"})


def test_user_space_yaml(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(
        "name: mine\ninput_size: 64\nchoices: {n: [1], t: [1, 2], e: [2], h: [1], f: [2], p: [2]}\n"
        "width: {c1: [8], multipliers: [1, 2], caps: [null, null, 32, 32, 64]}\n"
    )
    s = get_space(str(p))
    assert s.name == "mine" and s.input_size == 64
    assert s.cardinality() == 8 * len(s.channel_tuples)
    archs = s.sample(s.cardinality(), seed=0)
    assert len(set(archs)) == s.cardinality()
    with pytest.raises(SpaceError, match="only"):
        s.sample(s.cardinality() + 1, seed=0)


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("name: x\nchoices: {n: [1]}\n", "width"),
        ("name: x\nchoices: {n: [1], t: [1], e: [1], h: [1], f: [1], p: [2], q: [1]}\n"
         "width: {c1: [8], multipliers: [1], caps: [null, null, 8, 8, 8]}\n", "unknown gene or family 'q'"),
        ("name: x\nchoices: {n: [1], t: [1], e: [1], h: [1], f: [1]}\n"
         "width: {c1: [8], multipliers: [1], caps: [null, null, 8, 8, 8]}\n", "choices.p"),
        ("name: x\nchoices: {n: [1], t: [1], e: [1], h: [1], f: [1], p: [2]}\n"
         "width: {c1: [8], multipliers: [1], caps: [null, 8, 8]}\n", "width.caps"),
        ("name: x\nchoices: {n: [1], t: [1], e: [1], h: [16], f: [1], p: [2]}\n"
         "width: {c1: [8], multipliers: [1], caps: [null, null, 8, 8, 8]}\n", "choices.h3"),
        ("name: x\nchoices: {n: [1.5], t: [1], e: [1], h: [1], f: [1], p: [2]}\n"
         "width: {c1: [8], multipliers: [1], caps: [null, null, 8, 8, 8]}\n", "choices.n2"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_malformed_space_yaml_one_line(tmp_path, text, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(SpaceError) as exc:
        get_space(str(p))
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_input_size_override():
    s = get_space("hytnas", input_size=32)
    assert s.input_size == 32 and get_space("hytnas").input_size == 224
    with pytest.raises(SpaceError, match="input_size"):
        get_space("hytnas", input_size=4)


def test_to_arch_cfg_follows_the_stage_grammar():
    s = get_space("hytnas")
    a = s.validate({**dict(zip(GENES, s.to_vector(s.sample(1, seed=0)[0]))),
                    "c1": 24, "c2": 48, "c3": 96, "c4": 128, "c5": 144, "n2": 3})
    cfg = s.to_arch_cfg(a)
    types = [b.type for b in cfg.blocks]
    assert types == ["mv2", "mv2", "mv2", "mobilevit", "mv2", "mobilevit", "mv2", "mobilevit"]
    assert [b.s for b in cfg.blocks] == [1, 2, 2, 1, 2, 1, 2, 1]
    assert cfg.blocks[1].d == 3
    assert [b.width for b in cfg.blocks if b.type == "mobilevit"] == [64, 128, 128]
    assert cfg.head_chs == min(4 * 144, 960) and cfg.stem_chs == 16 and cfg.stem_stride == 2
    assert isinstance(a, Arch)
