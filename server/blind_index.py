"""Keyword search over encrypted memories: a blind index of keyed term hashes.

Without encryption, Postgres analyses content itself (`to_tsvector('english',
content)`). With it, Postgres must never see the words, so memoryd analyses
the text here the way Postgres' 'english' configuration does (lower-cased
words, its stop words dropped, the Snowball English stemmer that Postgres'
english_stem also runs), replaces each stem by a keyed hash and hands
Postgres a tsvector of hashes, with the words' positions. Queries are hashed
the same way, so `content_tsv @@ query` and ts_rank_cd work as before:
ranking is unchanged for text the two analysers split alike (plain words);
they differ on what Postgres' parser treats specially (e-mail addresses,
URLs, hyphenated words, file paths), which are split into plain words here.

Hashes are per user: HMAC-SHA256 under a key derived from the index key and
the user id, so the same word has unrelated hashes for two users and term
statistics cannot be compared across users. Content hashes (the dedupe of
identical semantic memories) are keyed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import defaultdict
from functools import lru_cache

import Stemmer

from server.crypto import Key

# Postgres' tsearch_data/english.stop (Snowball's English stop words).
_STOP_WORDS_TEXT = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will
    just don should now
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

# Letters and digits; anything else separates words (as Postgres' parser does
# for plain words, and does for "don't": "don", "t"). A hyphenated word is
# taken whole and then in parts, each at its own position, as Postgres does.
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
# tsvector positions stop at 16383; Postgres clamps them the same way.
_MAX_POSITION = 16383
_HASH_BYTES = 8  # 64 bits: no collisions among one user's words
_STEMMER = Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    stem: str = _STEMMER.stemWord(word)
    return stem


def terms(text: str) -> dict[str, list[int]]:
    """Stems of the text's words (stop words dropped) with their 1-based positions."""
    found: dict[str, list[int]] = defaultdict(list)
    position = 0
    for match in _WORD.finditer(text.lower()):
        token = match.group()
        words = [token, *token.split("-")] if "-" in token else [token]
        for word in words:
            position += 1
            if word not in STOP_WORDS:
                found[_stem(word)].append(min(position, _MAX_POSITION))
    return found


def _user_key(key: Key, user_id: str) -> bytes:
    return hmac.new(key.index_key, b"user\0" + user_id.encode(), hashlib.sha256).digest()


def _term_hash(user_key: bytes, term: str) -> str:
    digest = hmac.new(user_key, b"term\0" + term.encode(), hashlib.sha256).digest()
    return digest[:_HASH_BYTES].hex()


def tsvector(key: Key, user_id: str, content: str) -> str:
    """The content's blind index as a tsvector literal (for `%s::tsvector`)."""
    user_key = _user_key(key, user_id)
    return " ".join(
        f"{_term_hash(user_key, term)}:{','.join(map(str, positions))}"
        for term, positions in terms(content).items()
    )


def tsquery(keys: list[Key], user_id: str, text: str) -> str:
    """A tsquery literal matching any of the text's terms, hashed under each
    key (rows not yet re-keyed after a rotation carry an older key's hashes)."""
    stems = terms(text)
    hashed: list[str] = []
    for key in keys:
        user_key = _user_key(key, user_id)
        hashed.extend(_term_hash(user_key, term) for term in stems)
    return " | ".join(hashed)


def content_hash(key: Key, user_id: str, content: str) -> bytes:
    """Keyed hash of a memory's content: identical contents of one user match,
    and without the key a stored hash cannot be checked against guesses."""
    return hmac.new(
        _user_key(key, user_id), b"content\0" + content.encode(), hashlib.sha256
    ).digest()
