"""The P x K sampler (data.sampler: pk): P classes x K images per batch, classes with fewer than K images with
replacement, deterministic per (seed, epoch), disjoint across DDP ranks, resumable mid-epoch; evaluation loaders
are untouched; recipe errors."""
import copy
from collections import Counter

import pytest
from torch.utils.data import Dataset

from fgvc.config import DEFAULTS, apply_overrides, validate
from fgvc.data.samplers import PKSampler, split_token
from fgvc.engine.builder import SeededSamples, make_loader, pk_shape
from fgvc.engine.distributed import DistEnv, ShardSampler
from fgvc.errors import ConfigError

# 6 classes: sizes 8, 8, 6, 5, 2 (fewer than K = 4) and 1
LABELS = [0] * 8 + [1] * 8 + [2] * 6 + [3] * 5 + [4] * 2 + [5]
N = len(LABELS)  # 30


class Indexed(Dataset):
    """Returns (index, label); ``targets`` as FGVCDataset has them."""

    def __init__(self, labels: list[int]) -> None:
        self.targets = list(labels)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, self.targets[i]


def _batches(sampler: PKSampler) -> list[list[int]]:
    flat = list(sampler)
    return [flat[i:i + sampler.batch_size] for i in range(0, len(flat), sampler.batch_size)]


def test_each_batch_has_p_classes_of_k_images():
    s = PKSampler(LABELS, p=3, k=4, seed=0)
    assert s.batch_size == 12 and s.num_batches == N // 12 == len(_batches(s))
    for epoch in range(5):
        s.set_epoch(epoch)
        for batch in _batches(s):
            indices = [split_token(t, N)[0] for t in batch]
            per_class = Counter(LABELS[i] for i in indices)
            assert len(per_class) == 3 and set(per_class.values()) == {4}
            for c in range(3):  # K in a row, class by class
                assert len({LABELS[i] for i in indices[c * 4:(c + 1) * 4]}) == 1


def test_small_classes_give_every_image_then_draw_with_replacement():
    s = PKSampler(LABELS, p=6, k=4, seed=1)  # every class in every batch
    for epoch in range(3):
        s.set_epoch(epoch)
        batch = list(s)
        idx = [split_token(t, N)[0] for t in batch]
        assert Counter(idx[i] for i in range(len(idx)) if LABELS[idx[i]] == 5) == {29: 4}  # the 1-image class
        assert set(i for i in idx if LABELS[i] == 4) == {27, 28}  # both images of the 2-image class
        for c in (0, 1, 2, 3):  # at least K images: K distinct ones
            assert len({i for i in idx if LABELS[i] == c}) == 4
        # a repeated image is a new token (its own augmentation); the first draw is the plain index
        assert len(set(batch)) == len(batch)
        assert sorted(split_token(t, N)[1] for t in batch if split_token(t, N)[0] == 29) == [0, 1, 2, 3]


def test_classes_are_covered_evenly_over_epochs():
    s = PKSampler([c for c in range(10) for _ in range(6)], p=2, k=3, seed=0)  # 10 batches x 2 classes per epoch
    s.set_epoch(0)
    counts = Counter(c for batch in s.plan() for c in {t // 6 for t in batch})
    assert set(counts.values()) == {2}  # every class in exactly 2 batches: a permutation stream, not i.i.d. draws


def test_deterministic_per_seed_and_epoch():
    a, b = PKSampler(LABELS, 3, 4, seed=7), PKSampler(LABELS, 3, 4, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    c = PKSampler(LABELS, 3, 4, seed=8)
    c.set_epoch(2)
    assert list(a) != list(c)


def test_ddp_ranks_are_disjoint_and_together_the_single_process_batch():
    single = PKSampler(LABELS, p=4, k=3, seed=3)
    ranks = [PKSampler(LABELS, p=4, k=3, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in range(3):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        assert all(r.batch_size == 6 and len(r) == single.num_batches * 6 for r in ranks)
        for whole, b0, b1 in zip(_batches(single), *map(_batches, ranks)):
            assert not set(b0) & set(b1)  # no image (token) on both ranks
            assert not {LABELS[split_token(t, N)[0]] for t in b0} & {LABELS[split_token(t, N)[0]] for t in b1}
            assert b0 + b1 == whole
            for b in (b0, b1):  # each rank's share is itself a (P / W) x K batch
                assert set(Counter(LABELS[split_token(t, N)[0]] for t in b).values()) == {3}


def test_resume_mid_epoch_continues_with_the_same_batches():
    s = PKSampler(LABELS, 3, 4, seed=0, rank=0, world_size=1)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=12)
    assert list(s) == full[12:] and len(s) == len(full) - 12


def test_sampler_errors_say_what_to_do():
    with pytest.raises(ConfigError, match="p=7 classes per batch, but the training split has only 6 classes"):
        PKSampler(LABELS, p=7, k=2, seed=0)
    with pytest.raises(ConfigError, match="on 2 processes: .* P must be a multiple of 2"):
        PKSampler(LABELS, p=3, k=4, seed=0, rank=0, world_size=2)


def test_make_loader_pk_for_training_and_eval_loaders_untouched():
    ds = Indexed(LABELS)
    env = DistEnv()
    train = make_loader(ds, 12, 0, True, 0, env, False, pk=(3, 4))
    assert isinstance(train.sampler, PKSampler) and isinstance(train.dataset, SeededSamples)
    train.sampler.set_epoch(1)
    train.dataset.epoch = 1
    batches = [(i.tolist(), y.tolist()) for i, y in train]
    assert len(batches) == len(train) == N // 12
    for idx, ys in batches:  # the loader decodes tokens to dataset indices
        assert all(0 <= i < N and LABELS[i] == y for i, y in zip(idx, ys))
        assert set(Counter(ys).values()) == {4} and len(set(ys)) == 3
    evals = [make_loader(ds, 8, 0, False, 0, env, False, pk=pk) for pk in (None, (3, 4))]
    for ev in evals:
        assert isinstance(ev.sampler, ShardSampler) and ev.dataset is ds
    assert [b[0].tolist() for b in evals[0]] == [b[0].tolist() for b in evals[1]] == \
        [list(range(i, min(i + 8, N))) for i in range(0, N, 8)]
    with pytest.raises(ConfigError, match="set train.batch_size = P x K = 12"):
        make_loader(ds, 10, 0, True, 0, env, False, pk=(3, 4))


def test_repeated_draws_get_their_own_augmentation_seed():
    class Seeds:
        def __init__(self):
            self.seed = None

        def set_random_seed(self, seed):
            self.seed = seed

    class WithTransform(Indexed):
        def __getitem__(self, i):
            return self.transform.seed, self.targets[i]

    ds = WithTransform(LABELS)
    ds.transform = Seeds()
    wrapped = SeededSamples(ds, seed=0)
    first, again, other = wrapped[29][0], wrapped[29 + N][0], wrapped[28][0]
    assert len({first, again, other}) == 3
    assert wrapped[29 + N][1] == LABELS[29] and wrapped[29][0] == first  # deterministic


def _cfg(*overrides):
    cfg = copy.deepcopy(DEFAULTS)
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def test_recipe_keys_and_errors():
    assert pk_shape(_cfg()) is None  # the default: random
    assert pk_shape(_cfg("data.sampler=pk", "data.sampler_args.k=4", "train.batch_size=32")) == (8, 4)
    assert pk_shape(_cfg("data.sampler=pk", "data.sampler_args={p: 4, k: 2}", "train.batch_size=8")) == (4, 2)
    with pytest.raises(ConfigError, match=r"draws|P x K = train.batch_size.*set train.batch_size=12"):
        _cfg("data.sampler=pk", "data.sampler_args={p: 3, k: 4}", "train.batch_size=32")
    with pytest.raises(ConfigError, match="set train.batch_size=30"):
        _cfg("data.sampler=pk", "data.sampler_args.k=5", "train.batch_size=32")
    with pytest.raises(ConfigError, match="both must be >= 1"):
        _cfg("data.sampler=pk", "data.sampler_args.k=0")
    with pytest.raises(ConfigError, match=r"'data.sampler' must be one of \['random', 'pk'\], got 'pq'"):
        _cfg("data.sampler=pq")
    with pytest.raises(ConfigError, match=r"unknown key 'data.sampler_args.P'"):
        _cfg("data.sampler_args.P=4")
    with pytest.raises(ConfigError, match=r"'data.sampler_args.p' must be int or null"):
        _cfg("data.sampler=pk", "data.sampler_args.p=two")
    _cfg("data.sampler_args={p: 3, k: 5}")  # ignored with the random sampler
