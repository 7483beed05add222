"""The data stage on the real PTB, on custom corpora, and its download and error paths."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lsh import data


@pytest.fixture
def http_server() -> Iterator[callable]:
    """Start a real HTTP server on 127.0.0.1 serving a folder; yields `serve(folder) -> base url`."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def write_corpus(folder: Path, train: str, valid: str, test: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in zip(data.SPLITS, (train, valid, test)):
        (folder / f"{split}.txt").write_text(text)
    return folder


def test_ptb_token_counts_and_vocabulary(ptb_prepared: Path):
    meta = json.loads((ptb_prepared / "meta.json").read_text())
    assert meta["tokens"] == {"train": 929_589, "valid": 73_760, "test": 82_430}
    assert meta["vocab_size"] == 10_000
    assert meta["sha256"] == data.PTB_SHA256
    corpus = data.load_corpus(ptb_prepared)
    assert [len(corpus.train), len(corpus.valid), len(corpus.test)] == [929_589, 73_760, 82_430]
    assert corpus.train.dtype == np.int64
    assert corpus.vocab_size == 10_000 == int(corpus.train.max()) + 1
    assert len(set(corpus.vocab)) == 10_000 and data.EOS in corpus.vocab


@pytest.mark.parametrize("split", data.SPLITS)
def test_ids_decode_back_to_the_original_text(ptb_raw: Path, ptb_prepared: Path, split: str):
    original = data.read_raw(data.find_raw(ptb_raw)[split]).decode()
    decoded = data.decode(data.load_split(ptb_prepared, split), data.load_vocab(ptb_prepared))
    # The files pad every word with single spaces; the text itself must be identical.
    assert decoded == "".join(" ".join(line.split()) + "\n" for line in original.splitlines())


def test_train_tokens_caps_the_training_split_only(ptb_raw: Path, tmp_path: Path):
    meta = data.prepare(ptb_raw, tmp_path, train_tokens=5000, allow_download=False)
    assert meta["tokens"] == {"train": 5000, "valid": 73_760, "test": 82_430}
    assert meta["train_tokens_total"] == 929_589
    assert meta["vocab_size"] == 10_000, "the vocabulary still comes from the whole training split"
    full = data.encode(data.tokenize(data.read_raw(data.find_raw(ptb_raw)["train"]).decode()[:100_000]),
                       data.load_vocab(tmp_path), "train")
    np.testing.assert_array_equal(data.load_split(tmp_path, "train")[:1000], full[:1000])


def test_checksum_mismatch_names_file_expected_and_actual(ptb_raw: Path, tmp_path: Path):
    raw = tmp_path / "raw"
    shutil.copytree(ptb_raw, raw, ignore=shutil.ignore_patterns("*.md"))
    valid = data.find_raw(raw)["valid"]
    text = data.read_raw(valid).replace(b" the ", b" teh ", 1)
    valid.unlink()
    (raw / "ptb.valid.txt").write_bytes(text)
    with pytest.raises(data.DataError) as info:
        data.prepare(raw, tmp_path / "out", allow_download=False)
    message = str(info.value)
    assert str(raw / "ptb.valid.txt") in message
    assert f"expected {data.PTB_SHA256['valid']}" in message
    assert f"got {data.sha256(text)}" in message
    assert not (tmp_path / "out" / "meta.json").exists()


def test_missing_files_without_download_say_which_and_where(ptb_raw: Path, tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy2(data.find_raw(ptb_raw)["train"], raw)
    with pytest.raises(data.DataError) as info:
        data.prepare(raw, tmp_path / "out", allow_download=False)
    message = str(info.value)
    assert ("ptb.valid.txt, ptb.test.txt" in message
            and "ptb.train.txt" not in message.split("Missing:")[1].split(".")[0])
    assert f"into {raw}/" in message


def test_download_fetches_missing_files_from_a_local_server(ptb_raw: Path, tmp_path: Path, http_server):
    url = http_server(ptb_raw)  # serves the shared .gz copies; ptb.*.txt itself gives 404
    raw = tmp_path / "raw"
    meta = data.prepare(raw, tmp_path / "out", url=url)
    assert meta["tokens"] == {"train": 929_589, "valid": 73_760, "test": 82_430}
    assert sorted(p.name for p in raw.iterdir()) == [f"ptb.{s}.txt.gz" for s in ("test", "train", "valid")]
    assert meta["sha256"] == data.PTB_SHA256


def test_download_failure_lists_each_missing_file_and_where_to_put_it(tmp_path: Path, http_server):
    empty = tmp_path / "empty"
    empty.mkdir()
    url = http_server(empty)
    with pytest.raises(data.DataError) as info:
        data.prepare(tmp_path / "raw", tmp_path / "out", url=url)
    message = str(info.value)
    for split in data.SPLITS:
        assert f"{url}/ptb.{split}.txt.gz: HTTP 404" in message
    assert f"Put them (plain text or .gz) into {tmp_path / 'raw'}/" in message


def test_downloaded_file_with_a_bad_checksum_is_refused(ptb_raw: Path, tmp_path: Path, http_server):
    served = tmp_path / "served"
    shutil.copytree(ptb_raw, served)
    with gzip.open(served / "ptb.test.txt.gz", "wb") as f:
        f.write(b" not the test split \n")
    with pytest.raises(data.DataError, match=r"ptb\.test\.txt\.gz: sha256 mismatch"):
        data.prepare(tmp_path / "raw", tmp_path / "out", url=http_server(served))


def test_custom_corpus_maps_unseen_words_to_unk(tmp_path: Path):
    raw = write_corpus(tmp_path / "raw", "a b <unk>\nb c\n", "a z\n", "c c y\n")
    meta = data.prepare(raw, tmp_path / "out", verify=False, allow_download=False)
    vocab = data.load_vocab(tmp_path / "out")
    assert vocab == ["a", "b", "<unk>", "<eos>", "c"]
    assert meta["tokens"] == {"train": 7, "valid": 3, "test": 4}
    assert data.decode(data.load_split(tmp_path / "out", "valid"), vocab) == "a <unk>\n"


def test_custom_corpus_without_unk_names_the_unseen_word_and_line(tmp_path: Path):
    raw = write_corpus(tmp_path / "raw", "a b\nb c\n", "a b\nc\n", "a\nb c\nc zebra b\n")
    with pytest.raises(data.DataError) as info:
        data.prepare(raw, tmp_path / "out", verify=False, allow_download=False)
    assert f"{raw / 'test.txt'} line 3: word 'zebra' is not in the training vocabulary" in str(info.value)


def test_custom_corpus_is_refused_when_verification_is_on(tmp_path: Path):
    raw = write_corpus(tmp_path / "raw", "a b\n", "a\n", "b\n")
    with pytest.raises(data.DataError, match="set data.verify: false for a custom corpus"):
        data.prepare(raw, tmp_path / "out", allow_download=False)


def test_corrupt_gzip_is_named(tmp_path: Path):
    raw = write_corpus(tmp_path / "raw", "a\n", "a\n", "a\n")
    (raw / "train.txt").unlink()
    (raw / "train.txt.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(data.DataError, match=r"train\.txt\.gz: cannot read it"):
        data.prepare(raw, tmp_path / "out", verify=False, allow_download=False)


def test_prepared_files_missing_say_to_run_prepare(tmp_path: Path):
    with pytest.raises(data.DataError, match="run `lsh prepare` first"):
        data.load_corpus(tmp_path)


@pytest.mark.parametrize("split", ["train", "valid"])
def test_an_empty_split_is_named(tmp_path: Path, split: str):
    texts = {"train": "a b\n", "valid": "a\n", "test": "b\n", split: "\n \n"}
    raw = write_corpus(tmp_path / "raw", texts["train"], texts["valid"], texts["test"])
    with pytest.raises(data.DataError, match=f"{split}.txt: the {split} split is empty"):
        data.prepare(raw, tmp_path / "out", verify=False, allow_download=False)


def test_prepared_data_made_by_other_data_params_is_refused_naming_both_values(tmp_path: Path):
    raw = write_corpus(tmp_path / "raw", "a b c d e f\n" * 300, "a b\n", "c d\n")
    data.prepare(raw, tmp_path / "out", verify=False, allow_download=False, train_tokens=1000)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["made_by"] == {"train_tokens": 1000}
    assert len(data.load_corpus(tmp_path / "out", {"train_tokens": 1000}).train) == 1000
    with pytest.raises(data.DataError, match="was prepared with data.train_tokens = 1000, but the params have "
                                              "data.train_tokens = 2000"):
        data.load_corpus(tmp_path / "out", {"train_tokens": 2000})
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    del meta["made_by"]
    (tmp_path / "out" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(data.DataError, match="does not record the data params that made it"):
        data.load_corpus(tmp_path / "out", {"train_tokens": 1000})
