"""`curate distill --labels zeroshot:FILE` over a real ingested run embedded with the tiny model: labels are the
argmax of the stored image embeddings against the class prompts' zero-shot weights, the set records how they were
made, and bad requests are one-line errors.

The tiny model's random weights put every image in one class, so the run's stored image embeddings are replaced by
planted ones: sample i (in embeddings order) gets the zero-shot weights of class i % 6, its known label."""

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli.main import main
from curate.distill.run import DistillOptions
from curate.distill.source import labelled_selection
from curate.errors import UsageError
from curate.evaluate.metrics import TEMPLATES, class_prompts, zeroshot_weights
from curate.evaluate.run import encode_texts
from curate.models import ModelSpec
from curate.models.loading import load_model
from curate.stages.embeddings import load_embeddings
from tests.distill.test_distill_cli import TINY
from tests.shards import image_bytes, ingested_tars

CLASSES = ["red square", "green circle", "blue sky", "a dog", "a cat", "handwritten digit"]
FILE_CLASSES = [*CLASSES, "a bird"]  # no sample is planted as a bird
ZEROSHOT = [*TINY[2:], "--ipc", "1"]  # TINY without its --label-column; any class has at least one image


def class_weights(classes: list[str]) -> np.ndarray:
    """The classes' zero-shot weights, computed here: the class prompts' embeddings by the model the run used."""
    loaded = load_model(ModelSpec(random_weights=True), "cpu")  # the model `ingested_tars` embeds with
    return zeroshot_weights(encode_texts(loaded, class_prompts(classes)), len(TEMPLATES))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = ingested_tars(tmp_path_factory.mktemp("zeroshot"), shards=2, per_shard=6, embedded=True)
    weights, row = class_weights(CLASSES).astype(np.float32), 0
    for path in sorted((run.path / "embeddings").glob("*.parquet")):
        table = pq.read_table(path)
        planted = weights[np.arange(row, row + table.num_rows) % len(CLASSES)]
        column = pa.FixedSizeListArray.from_arrays(pa.array(planted.reshape(-1)), weights.shape[1])
        index = table.schema.get_field_index("image_embedding")
        pq.write_table(table.set_column(index, table.schema.field(index), column), path)
        row += table.num_rows
    return run


def planted_labels(run) -> dict[str, str]:
    uids = load_embeddings(run, None, progress=False).uids.to_pylist()
    return {uid: CLASSES[i % len(CLASSES)] for i, uid in enumerate(uids)}


@pytest.fixture(scope="module")
def class_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("classes") / "classes.txt"
    path.write_text("# colours and things\n\n" + "\n".join(f"  {c}  " for c in FILE_CLASSES) + "\n")
    return path


@pytest.fixture(scope="module")
def zeroshot_set(run, class_file):
    assert main(["distill", str(run.path), "--name", "zs", "--labels", f"zeroshot:{class_file}", *ZEROSHOT]) == 0
    return json.loads((run.path / "distilled" / "zs" / "distilled.json").read_text())


def expected_labels(run) -> dict[str, str]:
    """Each sample's class, computed here from the stored embeddings and the class prompts' embeddings."""
    embeddings = load_embeddings(run, "image", progress=False)
    best = np.argmax(embeddings.vectors @ class_weights(FILE_CLASSES).T, axis=1)
    return {uid: FILE_CLASSES[i] for uid, i in zip(embeddings.uids.to_pylist(), best, strict=True)}


def test_labels_are_the_zeroshot_argmax_of_the_stored_embeddings(run):
    data = labelled_selection(run, None, None, 8, zeroshot_classes=FILE_CLASSES)
    got = {uid: data.classnames[i] for uid, i in zip(data.uids, data.labels.tolist(), strict=True)}
    assert got == expected_labels(run) == planted_labels(run) and len(got) == 12
    assert data.classnames == sorted(CLASSES) and data.unlabelled == 0


def test_the_set_records_how_its_labels_were_made(run, zeroshot_set):
    counts = Counter(planted_labels(run).values())
    assert zeroshot_set["classnames"] == sorted(CLASSES) and set(counts.values()) == {2}  # a subset of the file's
    source = zeroshot_set["source"]
    assert source["class_counts"] == {c: counts[c] for c in sorted(counts)} and source["used"] == 12
    assert source["label_column"] is None and set(source["stage_versions"]) == {"ingest", "embed"}
    assert source["zeroshot"] == dict(classes=FILE_CLASSES, model=dict(model="curate-tiny", pretrained=None,
                                                                  random_weights=True), templates=list(TEMPLATES))
    assert zeroshot_set["options"]["zeroshot_classes"] == FILE_CLASSES and zeroshot_set["images"] == len(counts)


def test_a_changed_class_file_is_refused_and_the_same_one_reruns(run, zeroshot_set, class_file, tmp_path, capsys):
    args = ["distill", str(run.path), "--name", "zs", *ZEROSHOT]
    assert main([*args, "--labels", f"zeroshot:{class_file}"]) == 0  # finished: nothing to redo
    changed = tmp_path / "more.txt"
    changed.write_text(class_file.read_text() + "a fish\n")
    capsys.readouterr()
    assert main([*args, "--labels", f"zeroshot:{changed}"]) == 2
    assert "was distilled with other options (zeroshot_classes differ)" in capsys.readouterr().err


def bad_files(folder):
    (folder / "latin1.txt").write_bytes("caf\xe9\nbar\n".encode("latin-1"))
    (folder / "twice.txt").write_text("cat\ndog\n# a comment\ncat\n")
    (folder / "one.txt").write_text("# only\ncat\n\n")
    (folder / "dir.txt").mkdir()


@pytest.mark.parametrize(("extra", "message"), [
    (["--label-column", "shard", "--labels", "zeroshot:{dir}/one.txt"],
     "argument --labels: not allowed with argument --label-column"),
    ([], "one of the arguments --label-column --labels is required"),
    (["--labels", "{dir}/one.txt"], "--labels must be zeroshot:FILE"),
    (["--labels", "zeroshot:{dir}/nope.txt"], "--labels: no class file"),
    (["--labels", "zeroshot:{dir}/latin1.txt"], "latin1.txt is not UTF-8 text (byte 3); save it as UTF-8"),
    (["--labels", "zeroshot:{dir}/twice.txt"], "twice.txt names class 'cat' twice; keep one"),
    (["--labels", "zeroshot:{dir}/one.txt"], "one.txt names 1 class; zero-shot labels need at least 2"),
    (["--labels", "zeroshot:{dir}/dir.txt"], "--labels: cannot read"),
])
def test_bad_label_requests_are_one_line_errors(run, tmp_path, capsys, extra, message):
    bad_files(tmp_path)
    extra = [e.replace("{dir}", str(tmp_path)) for e in extra]
    assert main(["distill", str(run.path), "--name", "fresh", *ZEROSHOT, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (run.path / "distilled" / "fresh").exists()


def test_a_run_without_embeddings_says_how_to_embed_it(tmp_path, class_file, capsys):
    bare = ingested_tars(tmp_path, shards=1, per_shard=2)
    assert main(["distill", str(bare.path), "--name", "zs", "--labels", f"zeroshot:{class_file}", *ZEROSHOT]) == 2
    err = capsys.readouterr().err
    assert "has no completed embed stage; embed the run first (`curate embed RUN --model MODEL`)" in err, err
    assert err.count("\n") == 1 and not (bare.path / "distilled" / "zs" / "options.json").exists()


def test_samples_without_an_image_embedding_are_unlabelled(tmp_path):
    small = ingested_tars(tmp_path, shards=1, per_shard=3, embedded=True)
    [path] = (small.path / "embeddings").glob("*.parquet")
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # the first sample loses its embedding
    data = labelled_selection(small, None, None, 8, zeroshot_classes=CLASSES)
    assert data.unlabelled == 1 and data.selected == 3 and len(data.uids) == 2
    assert table["uid"][0].as_py() not in data.uids
    pq.write_table(table.slice(0, 0), path)
    with pytest.raises(UsageError, match="3 selected samples have no image embedding, 0 have no usable image"):
        labelled_selection(small, None, None, 8, zeroshot_classes=CLASSES)


def test_the_options_need_exactly_one_label_source():
    for options in (DistillOptions(), DistillOptions(label_column="shard", zeroshot_classes=("a", "b"))):
        with pytest.raises(UsageError, match="give either label_column"):
            options.check()
    with pytest.raises(UsageError, match="not one string"):
        DistillOptions(zeroshot_classes="ab").check()
    assert "zeroshot_classes" not in DistillOptions(label_column="shard").as_dict()  # older sets' options.json
    assert DistillOptions(zeroshot_classes=("a", "b")).as_dict()["zeroshot_classes"] == ["a", "b"]


def test_baselines_of_a_zeroshot_set_use_its_zeroshot_labels(run, zeroshot_set, tmp_path):
    from curate.distill.eval_set import SetEvalOptions, evaluate_distilled

    images = [image_bytes((i * 40, 90, 10)) for i in range(len(CLASSES))]
    test = tmp_path / "test.parquet"
    pq.write_table(pa.table({"jpg": pa.array(images, pa.binary()), "label": CLASSES}), test)
    result = evaluate_distilled(run, "zs", SetEvalOptions(test=str(test), epochs=1, baselines=("random", "full")))
    ipc = zeroshot_set["ipc"]
    assert [(s["method"], s["size"]) for s in result["summary"]] == [
        ("tesla", ipc * len(CLASSES)), ("random", ipc * len(CLASSES)), ("full", 12)]
