"""Tags and entity spans for sentences given on the command line, in files, or on stdin."""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.task import DataInfo
from torchstarter.errors import UserError
from torchstarter.tasks.ner.data import MAX_WORD_CHARS, Encoder, option
from torchstarter.tasks.ner.entities import spans


def read_sentences(inputs: list[str]) -> list[list[str]]:
    """Each input is a sentence, a text file of one sentence a line, or '-' for stdin.

    Sentences are split on whitespace: give them tokenised ("New York ." not "New York.").
    Files and stdin are read the same way, as strict UTF-8 (see `decode_text`).
    """
    lines: list[str] = []
    for item in inputs:
        if item == "-":
            lines.extend(decode_text(_read_stdin(), "<stdin>").splitlines())
        elif _path_is(item, Path.is_file):
            try:
                data = Path(item).read_bytes()
            except OSError as exc:
                raise UserError(f"{item}: cannot be read ({exc.strerror}); pass a text file "
                                f"of one sentence a line") from None
            lines.extend(decode_text(data, item).splitlines())
        elif _looks_like_a_path(item):
            what = "a folder" if _path_is(item, Path.is_dir) else "not found"
            raise UserError(f"{item}: {what}; pass a text file of one sentence a line (a "
                            f"single word that looks like a path is not tagged as text: "
                            f"add a token, e.g. '{item} .', to tag it)")
        else:
            lines.append(item)
    sentences = [line.split() for line in lines if line.strip()]
    if not sentences:
        raise UserError("predict: no sentence given (pass sentences, text files or - for stdin)")
    return sentences


TO_UTF8 = "convert it to UTF-8 (e.g. iconv -f windows-1252 -t utf-8)"


def decode_text(data: bytes, name: str) -> str:
    """Strict UTF-8, a leading byte-order mark dropped (Notepad writes one; kept, it would
    stick to the first word and change its tags). Any other encoding is refused with the
    line of its first bad byte, since replacing bytes would silently tag other words."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UserError(f"{name}:1: UTF-16 text (it starts with a UTF-16 byte-order mark), "
                        f"not UTF-8 text; convert it to UTF-8 (e.g. iconv -f utf-16 -t utf-8)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise UserError(f"{name}:{line}: holds a NUL byte: UTF-16 "
                        f"text or a binary file, not UTF-8 text; {TO_UTF8}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{name}:{line}: byte 0x{data[exc.start]:02X} is not UTF-8 text; "
                        f"{TO_UTF8}") from None


def _read_stdin() -> bytes:
    """The bytes of stdin, so they are decoded like a file's (not with the locale's
    encoding and its replacement characters)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # stdin replaced by a text stream (embedding, tests): already text
        return sys.stdin.read().encode("utf-8", "surrogateescape")
    return stream.read()


def _looks_like_a_path(item: str) -> bool:
    """One token ending in a text-file suffix or a slash: a mistyped file or folder name
    (not words such as "and/or" or "1/2", which are tagged as text)."""
    return len(item.split()) == 1 and (item.endswith(("/", "\\")) or bool(
        re.search(r"\.(txt|text|tsv|csv|conll|json|jsonl)$", item, re.IGNORECASE)))


def _path_is(item: str, test: Callable[[Path], bool]) -> bool:
    try:
        return test(Path(item))
    except OSError:  # e.g. a sentence longer than a file name may be
        return False


def predict(model: torch.nn.Module, params: Params, inputs: list[str], device: torch.device,
            data_info: DataInfo) -> list[dict[str, Any]]:
    return predict_inputs(model, params, read_sentences(inputs), device, data_info)


@torch.inference_mode()
def predict_inputs(model: torch.nn.Module, params: Params, sentences: list[list[str]],
                   device: torch.device, data_info: DataInfo) -> list[dict[str, Any]]:
    """Per sentence: its tokens, their tags, each tag's probability, and the entity spans.

    The probability is the model's for that tag at that token: the softmax of the tag
    scores, or with a CRF the marginal over every tag path (so it agrees with Viterbi's
    choice of a whole path, and may be under 0.5 where paths compete).
    """
    enc = Encoder(data_info)  # lowercased lookups when data_info says so, as in training
    with_cases = bool(option(params, "case_features"))
    model.eval()
    rows = []
    for start in range(0, len(sentences), params.batch_size):
        chunk = sentences[start:start + params.batch_size]
        width = max(len(s) for s in chunk)
        words = torch.zeros(len(chunk), width, dtype=torch.long)
        chars = torch.zeros(len(chunk), width, MAX_WORD_CHARS, dtype=torch.long)
        for i, tokens in enumerate(chunk):
            words[i, :len(tokens)] = torch.tensor(enc.words(tokens))
            for j, token in enumerate(tokens):
                ids = enc.chars(token)
                chars[i, j, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        batch = {"words": words.to(device), "chars": chars.to(device),
                 "lengths": torch.tensor([len(s) for s in chunk], device=device)}
        if with_cases:
            cases = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, tokens in enumerate(chunk):
                cases[i, :len(tokens)] = torch.tensor(enc.cases(tokens))
            batch["cases"] = cases.to(device)
        out = model(batch)
        predicted = out.predictions()
        chosen = tag_probabilities(out).gather(2, predicted.clamp(min=0)[:, :, None])
        for tokens, ids, probs in zip(chunk, predicted.cpu(), chosen.squeeze(2).cpu(),
                                      strict=True):
            tags = [data_info["tags"][int(k)] for k in ids[:len(tokens)]]
            entities = [{"type": kind, "text": " ".join(tokens[a:b]), "start": a, "end": b}
                        for kind, a, b in spans(tags)]
            rows.append({"tokens": tokens, "tags": tags,
                         "probabilities": [round(float(p), 4) for p in probs[:len(tokens)]],
                         "entities": entities})
    return rows


def tag_probabilities(out: Any) -> torch.Tensor:
    """[B, T, K] probability of each tag at each token (see predict_inputs)."""
    if out.crf is None:
        return out.emissions.float().softmax(-1)
    # The marginals are the gradient of log Z with respect to the emissions.
    with torch.inference_mode(False), torch.enable_grad():
        emissions = out.emissions.float().clone().requires_grad_(True)
        mask = out.mask.clone()
        log_z = out.crf.log_partition(emissions, mask)
        (marginals,) = torch.autograd.grad(log_z.sum(), emissions)
    return marginals.detach()


def serve_inputs(body: Any, limits: Mapping[str, int]) -> list[list[str]]:
    """The sentences of a request to `serve`: {"sentence": "..."} or {"sentences": [...]},
    each a string (split on whitespace, as predict splits a line) or a list of tokens."""
    if not isinstance(body, dict) or len(body) != 1 or \
            not ({"sentence", "sentences"} & set(body)):
        raise UserError(f"a JSON object with one field, 'sentence' or 'sentences', was "
                        f"expected; {SENTENCE_FIELDS}")
    items = [body["sentence"]] if "sentence" in body else body["sentences"]
    if not isinstance(items, list):
        raise UserError(f"'sentences' must be a list; {SENTENCE_FIELDS}")
    if not items:
        raise UserError(f"'sentences' is empty; {SENTENCE_FIELDS}")
    if len(items) > limits["max_items"]:
        raise UserError(f"{len(items)} sentences in one request, more than --max-items "
                        f"{limits['max_items']}; send them in smaller requests")
    sentences = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            tokens = item.split()
        elif isinstance(item, list) and all(isinstance(t, str) and t.split() == [t]
                                            for t in item):
            tokens = list(item)
        else:
            raise UserError(f"sentence {i}: a string or a list of tokens (strings without "
                            f"whitespace) was expected; {SENTENCE_FIELDS}")
        if any("\x00" in t for t in tokens):
            raise UserError(f"sentence {i}: holds a NUL character; send text")
        try:
            "".join(tokens).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"sentence {i}: holds a lone surrogate (an escape such as "
                            f"\\ud800 that is no character); send text") from None
        if not tokens:
            raise UserError(f"sentence {i}: has no tokens; {SENTENCE_FIELDS}")
        if len(tokens) > limits["max_tokens"]:
            raise UserError(f"sentence {i}: {len(tokens):,} tokens, more than --max-tokens "
                            f"{limits['max_tokens']:,}; split it into sentences")
        sentences.append(tokens)
    return sentences


SENTENCE_FIELDS = ('send {"sentence": "John lives in New York ."} or {"sentences": [...]} '
                   '(tokenised text, or lists of tokens)')


def format_predictions(rows: list[dict[str, Any]]) -> str:
    """token/TAG pairs, then one line per entity span."""
    out = []
    for row in rows:
        out.append(" ".join(f"{t}/{g}" for t, g in zip(row["tokens"], row["tags"],
                                                        strict=True)))
        for e in row["entities"]:
            out.append(f"    {e['type']:4s} {e['text']}  [{e['start']}:{e['end']}]")
    return "\n".join(out)
