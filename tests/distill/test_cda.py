"""CDA and SRe2L (curate.distill.teacher, cda, recover): the BN-matching loss against a hand computation, the
curriculum, recovery independent of the split into slices, and `curate distill --method cda` end to end."""

import copy
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torchvision.transforms.v2.functional import resized_crop

import curate.distill.cda as cda
from curate.cli.main import main
from curate.distill.cda import CDAConfig, bn_matching_loss, crop_lower_bound, recover_slice
from curate.distill.recover import plan_slices
from curate.distill.relabel import load_soft_crops
from curate.distill.run import DistillOptions
from curate.distill.teacher import TeacherConfig, build_teacher, load_checkpoint, train_teacher
from curate.errors import UsageError
from tests.shards import ingested_tars, noise_heldout

# Two classes of six 8 px images; a ConvNet-1 teacher of width 4 trained one epoch, three recovery iterations.
TINY_CDA = ["--label-column", "shard", "--ipc", "2", "--image-size", "8", "--width", "4", "--depth", "1",
            "--method", "cda", "--teacher", "convnet", "--teacher-epochs", "1", "--iterations", "3",
            "--class-batch", "1"]


def test_the_bn_matching_loss_is_the_hand_computed_one():
    first, conv, second = nn.BatchNorm2d(2, eps=0.0), nn.Conv2d(2, 1, 1, bias=False), nn.BatchNorm2d(1)
    model = nn.Sequential(first, conv, second, nn.Flatten(), nn.Linear(2, 3)).eval()
    with torch.no_grad():
        first.running_mean.copy_(torch.tensor([1.0, 0.0]))
        first.running_var.copy_(torch.tensor([2.0, 1.0]))
        conv.weight.copy_(torch.tensor([2.0, 0.0]).view(1, 2, 1, 1))  # reads channel 0 only, doubled
    # channel 0 holds 1, 2 | 3, 6 (mean 3, variance 14/4); channel 1 holds 0, 0 | 0, 4 (mean 1, variance 3)
    x = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]], [[[3.0, 6.0]], [[0.0, 4.0]]]])
    logits, loss = bn_matching_loss(model, x, first_bn_multiplier=10.0)
    first_term = math.hypot(3 - 1, 1 - 0) + math.hypot(3.5 - 2, 3 - 1)
    # the second BN sees 2 (x0 - 1) / sqrt(2) = sqrt(2) (x0 - 1): mean 2 sqrt(2), variance 2 x 3.5; running 0, 1
    second_term = 2 * math.sqrt(2) + (7 - 1)
    assert loss.item() == pytest.approx(10 * first_term + second_term, rel=1e-6)
    assert torch.equal(logits, model(x)) and not any(m._forward_hooks for m in model.modules())
    _, unweighted = bn_matching_loss(model, x, first_bn_multiplier=1.0)
    assert unweighted.item() == pytest.approx(first_term + second_term, rel=1e-6)
    with pytest.raises(ValueError, match="no BatchNorm2d"):
        bn_matching_loss(nn.Linear(2, 2), torch.zeros(1, 2))


@pytest.mark.parametrize(("curriculum", "start", "quarter"), [
    ("cosine", 1.0, 0.08 + 0.92 * 0.5), ("linear", 1.0, 0.08 + 0.92 * 0.5), ("step", 1.0, 1.0),
    ("none", 0.08, 0.08)])
def test_the_crop_bound_falls_from_one_to_min_scale_by_the_milestone(curriculum, start, quarter):
    bound = [crop_lower_bound(i, 100, curriculum, milestone=0.5, min_scale=0.08) for i in (0, 25, 50, 99)]
    assert bound == pytest.approx([start, quarter, 0.08, 0.08])
    assert crop_lower_bound(99, 100, curriculum, milestone=1.0, min_scale=0.2) >= 0.2
    assert crop_lower_bound(10, 100, "cosine") > crop_lower_bound(60, 100, "cosine")
    with pytest.raises(ValueError, match="unknown curriculum 'easy'"):
        crop_lower_bound(0, 10, "easy")


@pytest.fixture(scope="module")
def teacher():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(6)
    images = torch.randn(18, 3, 8, 8, generator=generator) + labels.view(-1, 1, 1, 1)
    return train_teacher(images, labels, 3, TeacherConfig(arch="convnet", epochs=2, width=4, depth=1,
                                                          batch_size=6), seed=0)


NORMALIZATION = ((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


def recover_all(teacher, slices, config, workers):
    """Returns {(IPC index, class): image} of the slices recovered by `workers` threads, each taking its share in
    reverse order with its own copy of the teacher (as each map task loads its own: the BN hooks of one module
    would see both threads' activations)."""
    def run(share):
        own = copy.deepcopy(teacher)
        return [(s, recover_slice(own, s[1], s[0], 8, *NORMALIZATION, config, seed=5)) for s in share[::-1]]

    shares = [slices[w::workers] for w in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        done = [pair for part in pool.map(run, shares) for pair in part]
    return {(index, c): result.images[k] for (index, group), result in done for k, c in enumerate(group)}


def test_recovery_does_not_depend_on_the_split_into_slices(teacher):
    config = CDAConfig(iterations=4, class_batch=2)
    slices = plan_slices(3, 2, config.class_batch)
    assert slices == [(0, (0, 1)), (0, (2,)), (1, (0, 1)), (1, (2,))]
    torch.manual_seed(0)
    one = recover_all(teacher, slices, config, workers=1)
    torch.manual_seed(1)  # the global RNG plays no part
    two = recover_all(teacher, slices, config, workers=2)
    assert one.keys() == two.keys() and len(one) == 6
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not torch.equal(one[(0, 0)], one[(1, 0)])  # each IPC index draws its own noise
    m, s = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION)
    pixels = torch.stack(list(one.values())) * s + m
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6  # clipped to the valid pixel range


@pytest.mark.parametrize("curriculum", ["cosine", "none"])
def test_the_recovery_loss_falls(teacher, curriculum):
    result = recover_slice(teacher, [0, 1, 2], 0, 8, *NORMALIZATION, CDAConfig(iterations=40, curriculum=curriculum),
                           seed=0)
    assert len(result.losses) == 40 and result.images.shape == (3, 3, 8, 8)
    assert np.mean(result.losses[-5:]) < 0.5 * np.mean(result.losses[:5])


def test_views_are_the_crops_flips_and_rolls_they_say():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    whole = cda.View(0, 0, 4, 4, False, 0, 0)
    assert torch.allclose(cda.augment(x, [whole, whole]), x)
    flipped_rolled = cda.View(0, 0, 4, 4, True, 1, 2)
    expected = torch.roll(x[1:].flip(3), shifts=(1, 2), dims=(2, 3))
    assert torch.allclose(cda.augment(x, [whole, flipped_rolled])[1:], expected)
    corner = cda.View(1, 2, 3, 2, True, 0, 0)  # rows 1-3, columns 2-3, resized to 4 x 4 then flipped
    resized = resized_crop(x[:1], 1, 2, 3, 2, [4, 4], antialias=False).flip(3)  # RandomResizedCrop's own op
    assert torch.allclose(cda.augment(x[:1], [corner]), resized, atol=1e-5)
    generator = torch.Generator().manual_seed(0)
    views = [cda.draw_view(generator, 32, 0.08, 4, True) for _ in range(200)]
    areas = [v.height * v.width / 32**2 for v in views]
    assert min(areas) >= 0.06 and max(areas) <= 1 and min(areas) < 0.3
    assert {v.flip for v in views} == {True, False} and {v.down for v in views} == set(range(5))


def test_a_teacher_checkpoint_loads_with_or_without_its_wrapping(tmp_path):
    torch.manual_seed(0)
    model = build_teacher("convnet", 3, 4, 8, width=4, depth=1).eval()
    path = tmp_path / "teacher.pth"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(load_checkpoint(path, "convnet", 3, 4, 8, width=4, depth=1)(x), model(x))
    with pytest.raises(UsageError, match=r"does not fit a convnet teacher of 5 classes at 8 px: .*size mismatch"):
        load_checkpoint(path, "convnet", 3, 5, 8, width=4, depth=1)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(UsageError, match="cannot read --teacher-checkpoint"):
        load_checkpoint(tmp_path / "junk.pth", "convnet", 3, 4, 8)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = ingested_tars(tmp_path_factory.mktemp("cda"), shards=2, per_shard=6)
    assert main(["distill", str(run.path), "--name", "cda", *TINY_CDA]) == 0
    return run


def test_a_cda_set_has_its_teacher_slices_and_hard_labels(run):
    folder = run.path / "distilled" / "cda"
    summary = json.loads((folder / "distilled.json").read_text())
    assert summary["method"] == "cda" and summary["lr"] is None and summary["images"] == 4
    assert summary["iterations"] == 3 and summary["soft_labels"] is False
    options = summary["options"]
    assert options["teacher"] == "convnet" and options["curriculum"] == "cosine" and "experts" not in options
    assert sorted(p.name for p in (folder / "slices").iterdir()) == [f"{i}.safetensors" for i in range(4)]
    stored = load_file(folder / "images.safetensors")
    assert stored["labels"].tolist() == [0, 0, 1, 1] and stored["images"].shape == (4, 3, 8, 8)
    assert torch.equal(stored["images"][1], load_file(folder / "slices" / "2.safetensors")["images"][0])
    assert summary["relabelled"] is True and options["relabel_epochs"] == 300
    crops = load_soft_crops(folder / "relabel.safetensors")
    assert crops.logits.shape == (300, 4, 2) and crops.config.temperature == 20.0


def test_a_killed_recovery_resumes_with_the_slices_it_lacks(run, monkeypatch):
    folder = run.path / "distilled" / "cda"
    before = load_file(folder / "images.safetensors")["images"]
    teacher_written = (folder / "teacher.safetensors").stat().st_mtime_ns
    (folder / "distilled.json").unlink()
    (folder / "slices" / "1.safetensors").unlink()
    calls = []
    recover = cda.recover_slice
    monkeypatch.setattr(cda, "recover_slice", lambda *a, **k: calls.append(a[1:3]) or recover(*a, **k))
    assert main(["distill", str(run.path), "--name", "cda", *TINY_CDA]) == 0
    assert calls == [((1,), 0)]  # slice 1: IPC index 0 of class 1
    assert (folder / "teacher.safetensors").stat().st_mtime_ns == teacher_written  # reused, not trained again
    assert torch.equal(load_file(folder / "images.safetensors")["images"], before)


def test_distill_eval_reads_a_cda_set(run, tmp_path, capsys):
    meta = json.loads((run.path / "distilled" / "cda" / "distilled.json").read_text())
    noise_heldout(tmp_path / "heldout.parquet", meta["classnames"], 2)
    capsys.readouterr()
    assert main(["distill-eval", str(run.path), "--name", "cda", "--test", str(tmp_path / "heldout.parquet"),
                 "--seeds", "0", "--epochs", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"][0]
    assert summary["method"] == "cda" and summary["size"] == 4 and 0 <= summary["mean"] <= 1
    assert summary["relabelled"] is True  # trained on the teacher's soft crops


@pytest.mark.parametrize(("extra", "message"), [
    (["--curriculum", "easy"], "unknown --curriculum 'easy'; choose one of cosine, linear, step, none"),
    (["--milestone", "0"], "--milestone must be in (0, 1], got 0.0"),
    (["--milestone", "1.5"], "--milestone must be in (0, 1], got 1.5"),
    (["--min-scale", "0"], "--min-scale must be in (0, 1], got 0.0"),
    (["--r-bn", "-1"], "--r-bn must be at least 0, got -1.0"),
    (["--recover-lr", "0"], "--recover-lr must be positive, got 0.0"),
    (["--teacher", "vgg"], "unknown --teacher 'vgg'; choose one of resnet18, convnet"),
    (["--teacher-checkpoint", "/nonexistent.pth"], "--teacher-checkpoint /nonexistent.pth is not a file"),
    (["--experts", "3"], "--experts is a setting of --method tesla, not cda"),
    (["--method", "sre2l", "--curriculum", "cosine"], "--method sre2l has no curriculum"),
    (["--soft-labels"], "--soft-labels is TESLA's; --method cda relabels by the teacher"),
    (["--relabel-temperature", "0"], "--relabel-temperature must be positive, got 0.0"),
    (["--method", "tesla"], "--teacher is a setting of --method cda, sre2l and relabel, not tesla"),
])
def test_bad_cda_options_are_one_line_errors(run, capsys, extra, message):
    assert main(["distill", str(run.path), "--name", "fresh", *TINY_CDA, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (run.path / "distilled" / "fresh").exists()


def test_a_refused_request_writes_nothing_and_locks_nothing(run, tmp_path, capsys):
    args = ["distill", str(run.path), "--name", "ckpt", *TINY_CDA, "--relabel-epochs", "0"]
    folder = run.path / "distilled" / "ckpt"
    torch.manual_seed(0)
    wrong, junk, good = tmp_path / "wrong.pth", tmp_path / "junk.pth", tmp_path / "good.pth"
    torch.save(build_teacher("convnet", 3, 5, 8, width=4, depth=1).state_dict(), wrong)  # 5 classes, not 2
    junk.write_bytes(b"junk")
    torch.save(build_teacher("convnet", 3, 2, 8, width=4, depth=1).state_dict(), good)
    for extra, message in [(["--teacher-checkpoint", str(wrong)], "does not fit a convnet teacher of 2 classes"),
                           (["--teacher-checkpoint", str(junk)], "cannot read --teacher-checkpoint"),
                           (["--ipc", "7"], "fewer than --ipc 7")]:  # a class has 6 images
        capsys.readouterr()
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not folder.exists()
    assert main([*args, "--teacher-checkpoint", str(good)]) == 0  # not refused for other options than the bad one
    assert json.loads((folder / "options.json").read_text())["teacher_checkpoint"] == str(good)


def test_sre2l_is_cda_without_the_curriculum(run):
    assert (DistillOptions(method="sre2l").curriculum, DistillOptions(method="cda").curriculum) == ("none", "cosine")
    assert (DistillOptions(method="cda").iterations, DistillOptions().iterations) == (1000, 5000)
    assert main(["distill", str(run.path), "--name", "sre2l", *TINY_CDA, "--method", "sre2l"]) == 0
    options = json.loads((run.path / "distilled" / "sre2l" / "options.json").read_text())
    assert options["method"] == "sre2l" and options["curriculum"] == "none" and options["iterations"] == 3
    assert Path(run.path / "distilled" / "sre2l" / "teacher.safetensors").exists()


def test_the_ray_runner_recovers_the_same_set(run, ray_local):
    assert main(["distill", str(run.path), "--name", "cda-ray", "--runner", "ray", *TINY_CDA]) == 0
    local, ray = (load_file(run.path / "distilled" / name / "images.safetensors") for name in ("cda", "cda-ray"))
    assert torch.equal(local["labels"], ray["labels"])
    assert torch.allclose(local["images"], ray["images"], atol=1e-5)  # Ray's workers may round differently
    assert len(list((run.path / "distilled" / "cda-ray" / "slices").iterdir())) == 4  # written by the tasks
