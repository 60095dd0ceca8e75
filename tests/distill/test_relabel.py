"""FKD-style relabelling (curate.distill.relabel): crops drawn per (epoch, image), reproduced exactly for teacher and
student, the teacher's stored logits, the KD loss, training on soft crops in the evaluation protocol, the file, and
`curate distill-eval` on a set that carries one."""

import math

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from curate.cli.main import main
from curate.distill.convnet import ConvNetSpec, convnet, flatten_params
from curate.distill.eval_set import set_tensors
from curate.distill.evaluate import EvalConfig, evaluate_set, train_on_set
from curate.distill.layout import set_folder
from curate.distill.output import read_set
from curate.distill.relabel import (
    RELABEL,
    RelabelConfig,
    apply_crops,
    draw_crops,
    kd_loss,
    load_soft_crops,
    relabel,
    save_soft_crops,
    write_relabel,
)
from tests.distill.test_distill_cli import TINY
from tests.distill.test_evaluate import patterns
from tests.shards import ingested_tars, noise_heldout

CONFIG = RelabelConfig(epochs=3, temperature=4.0, batch=5)


def teacher(classes: int = 3, size: int = 8, seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return convnet(ConvNetSpec(3, classes, size, width=4, depth=1))


@pytest.fixture(scope="module")
def task():
    return (*patterns(4, 0), *patterns(10, 1))


def test_crops_are_drawn_per_epoch_and_image_whatever_the_batch_or_set_size(task):
    images = task[0]
    boxes, flips = draw_crops(12, 8, CONFIG)
    assert boxes.shape == (3, 12, 4) and flips.shape == (3, 12) and boxes.dtype == torch.int64
    again, again_flips = draw_crops(5, 8, CONFIG)
    assert torch.equal(again, boxes[:, :5]) and torch.equal(again_flips, flips[:, :5])
    top, left, height, width = boxes.unbind(-1)
    assert bool((top >= 0).all() & (left >= 0).all() & (top + height <= 8).all() & (left + width <= 8).all())
    assert (height * width).min() >= 4 and len({tuple(b) for b in boxes.view(-1, 4).tolist()}) > 20  # 0.08 x 64 px
    assert 0 < flips.sum() < flips.numel()
    unflipped, none = draw_crops(12, 8, RelabelConfig(epochs=3, temperature=4.0, flip=False))
    assert torch.equal(unflipped, boxes) and not none.any()
    net = teacher()
    one, many = relabel(net, images, CONFIG), relabel(net, images, RelabelConfig(epochs=3, temperature=4.0, batch=12))
    assert torch.equal(one.boxes, many.boxes) and torch.equal(one.flips, many.flips)
    torch.testing.assert_close(one.logits.float(), many.logits.float(), atol=2e-3, rtol=2e-3)


def test_apply_crops_is_torchvisions_resized_crop_and_a_whole_box_is_the_identity(task):
    images = task[0]
    n = len(images)
    whole = torch.tensor([[0, 0, 8, 8]] * n)
    assert torch.equal(apply_crops(images, whole, torch.zeros(n, dtype=torch.bool), 8), images)
    assert torch.equal(apply_crops(images, whole, torch.ones(n, dtype=torch.bool), 8), images.flip(-1))
    boxes, flips = draw_crops(n, 8, CONFIG)
    expected = torch.stack([F.interpolate(images[k:k + 1, :, i:i + h, j:j + w], size=(8, 8), mode="bilinear",
                                          align_corners=False)[0] for k, (i, j, h, w) in enumerate(boxes[1].tolist())])
    expected = torch.where(flips[1][:, None, None, None], expected.flip(-1), expected)
    torch.testing.assert_close(apply_crops(images, boxes[1], flips[1], 8), expected)
    larger = apply_crops(images, boxes[1], flips[1], 16)
    assert larger.shape == (n, 3, 16, 16)


def test_the_stored_logits_are_the_teachers_outputs_on_the_crops(task):
    images = task[0]
    net = teacher().train()
    crops = relabel(net, images, CONFIG)
    assert net.training  # its mode is restored
    assert crops.logits.shape == (3, len(images), 3) and crops.logits.dtype == torch.float16
    assert (crops.epochs, crops.images, crops.classes, crops.image_size) == (3, len(images), 3, 8)
    net.eval()
    with torch.no_grad():
        for epoch in range(3):
            boxes, flips, logits = crops.epoch(epoch + 3)  # the student's epoch 3 + e reuses stored epoch e
            recomputed = net(apply_crops(images, boxes, flips, 8))
            torch.testing.assert_close(logits.float(), recomputed.half().float(), atol=2e-3, rtol=2e-3)


def test_the_kd_loss_is_t_squared_kl_of_the_softened_outputs():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    teacher_logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    t = 2.0

    def softmax(row):
        exps = [math.exp(v / t) for v in row]
        return [e / sum(exps) for e in exps]

    kl = [sum(p * math.log(p / q) for p, q in zip(softmax(tr), softmax(sr), strict=True))
          for sr, tr in zip(student.tolist(), teacher_logits.tolist(), strict=True)]
    assert kd_loss(student, teacher_logits, t).item() == pytest.approx(t * t * sum(kl) / 2, rel=1e-6)
    assert kd_loss(teacher_logits, teacher_logits.half(), t).item() == pytest.approx(0, abs=1e-6)


def test_soft_crops_train_the_protocols_network_instead_of_the_labels(task):
    images, labels, test_images, test_labels = task
    crops = relabel(teacher(seed=3), images, CONFIG)
    config = EvalConfig(epochs=4, width=8)
    hard = flatten_params(train_on_set(images, labels, 3, config, seed=1))
    soft = flatten_params(train_on_set(images, labels, 3, config, seed=1, crops=crops))
    assert not torch.allclose(hard, soft)
    assert torch.equal(soft, flatten_params(train_on_set(images, labels, 3, config, seed=1, crops=crops)))
    result = evaluate_set(images, labels, test_images, test_labels, 3, config, seeds=(0,), crops=crops)
    assert result["relabelled"] and not result["soft"] and 0 <= result["mean"] <= 1
    assert not evaluate_set(images, labels, test_images, test_labels, 3, config, seeds=(0,))["relabelled"]
    with pytest.raises(ValueError, match="soft crops are of 12 images"):
        train_on_set(images[:6], labels[:6], 3, config, crops=crops)


def test_soft_crops_round_trip_through_their_file(task, tmp_path):
    crops = relabel(teacher(), task[0], CONFIG)
    path = save_soft_crops(tmp_path / "crops.safetensors", crops)
    loaded = load_soft_crops(path)
    assert loaded.config == CONFIG and loaded.image_size == 8
    for name in ("boxes", "flips", "logits"):
        assert torch.equal(getattr(loaded, name), getattr(crops, name)), name
    assert [p.name for p in tmp_path.iterdir()] == ["crops.safetensors"]  # no temporary left behind
    assert write_relabel(tmp_path / "set", crops) == tmp_path / "set" / RELABEL
    crops.boxes[0, 0] = torch.tensor([5, 5, 8, 8])  # past the image's edge
    save_soft_crops(path, crops)
    with pytest.raises(ValueError, match="inconsistent soft crops"):
        load_soft_crops(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with set 'hard' (2 classes x IPC 2 of 8 px) relabelled by a small trained teacher, set 'bad' carrying
    soft crops of the wrong image count, and a Parquet held-out set."""
    run = ingested_tars(tmp_path_factory.mktemp("relabel"), shards=2, per_shard=6)
    for name in ("hard", "bad"):
        assert main(["distill", str(run.path), "--name", name, *TINY]) == 0
    meta, rows = read_set(run, "hard")
    images, labels, _ = set_tensors(run, "hard", meta, rows, "float")
    net = train_on_set(images, labels, 2, EvalConfig(epochs=3, width=4, depth=1, dsa=False), seed=0)
    write_relabel(set_folder(run, "hard"), relabel(net, images, RelabelConfig(epochs=2, batch=3)))
    write_relabel(set_folder(run, "bad"), relabel(net, images[:3], RelabelConfig(epochs=2)))
    return run, noise_heldout(run.path.parent / "heldout.parquet", meta["classnames"], 2)


def test_distill_eval_trains_a_relabelled_set_on_its_soft_crops(run, capsys):
    run, heldout = run
    base = ["distill-eval", str(run.path), "--name", "hard", "--test", str(heldout), "--epochs", "1", "--seeds", "0,1"]
    assert main([*base, "--baselines", "random"]) == 0
    assert main([*base, "--no-relabel"]) == 0
    tables = sorted((pq.read_table(p).to_pylist() for p in (run.path / "evaluations").glob("*.parquet")), key=len)
    plain, relabelled = tables  # the --no-relabel evaluation has no baseline rows
    assert {(r["method"], r["relabelled"]) for r in relabelled} == {("tesla", True), ("random", False)}
    assert len(relabelled) == 4 and {(r["method"], r["relabelled"]) for r in plain} == {("tesla", False)}
    assert relabelled[0]["evaluation"] != plain[0]["evaluation"]
    capsys.readouterr()
    assert main(["distill-eval", str(run.path), "--name", "bad", "--test", str(heldout), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "relabels 3 images" in err and "--no-relabel" in err and len(err.strip().splitlines()) == 1
