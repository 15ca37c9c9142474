"""Text generation: a character-level GRU that streams words, served by modelserve.

    modelserve serve examples/textgen.py
    curl -sN 'localhost:8000/v1/models/fables/predict?stream=true' \\
        -H 'content-type: application/json' -d '{"prompt": "The Fox", "max_tokens": 20}'

The first start trains a small GRU on `examples/data/fables.txt` (Aesop's fables in Townsend's
public-domain translation, 7.7 kB, a few seconds on two cores) and stores its weights under
`$MODELSERVE_DATA_DIR/models/fables/`; later starts load them with `torch.load(weights_only=True)`.
Nothing is downloaded. The model is tiny and its corpus tinier, so it writes fable-flavoured
nonsense, which is all it is for: a real generator to test streaming against, through the
native `?stream=true` route and the OpenAI-compatible chat and text completions
(`openai = "completions"`, docs/protocols.md).

`predict_stream` yields one word at a time (the word and the spaces after it): that is its
token, for `max_tokens` and for OpenAI's `usage`. `temperature` 0 picks the likeliest
character each step; `stop` ends the text before the first stop string.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

from modelserve import Service, batching

logger = logging.getLogger("examples.textgen")

CORPUS = Path(__file__).resolve().parent / "data" / "fables.txt"
# Bumped whenever the network or its training changes, so an older cache is not reused.
FORMAT_VERSION = 1
SEED = 0
EMBED = 32
HIDDEN = 128
SEQ_LEN = 48
BATCH = 32
STEPS = 300
LEARNING_RATE = 4e-3
MAX_PROMPT_CHARS = 2000
MAX_TOKENS = 512
# A word longer than this is cut: an untrained or odd sample never holds a chunk back long.
MAX_WORD_CHARS = 24
WORD = re.compile(r"\S+\s*|\s+")


class Prompt(BaseModel):
    """A text to continue, and how."""

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The text to continue",
        examples=["The Fox"],
    )
    max_tokens: int = Field(32, ge=1, le=MAX_TOKENS, description="Most words to generate")
    temperature: float = Field(
        0.8, ge=0, le=2, description="Sampling temperature; 0 always takes the likeliest"
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Sample from this much probability mass")
    stop: list[str] = Field(
        default_factory=list, max_length=4, description="The text ends before the first of these"
    )


class Completion(BaseModel):
    """The generated continuation."""

    text: str
    finish_reason: Literal["stop", "length"] = Field(
        description="stop: the model or a stop string ended it; length: max_tokens did"
    )


class CharGRU(nn.Module):
    """Characters in, next-character logits out."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.gru = nn.GRU(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.gru(self.embed(x), state)
        return self.head(out), state


def vocabulary(text: str) -> str:
    """The characters the model knows, in a fixed order."""
    return "".join(sorted(set(text)))


def train(text: str) -> CharGRU:
    """A GRU fitted to predict each next character of `text` (deterministic for SEED).

    On one thread: the tensors are too small to share, and two threads spinning against other
    work on a busy 2-core machine took 95 s where one took 9 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(text)
    finally:
        torch.set_num_threads(threads)


def _fit(text: str) -> CharGRU:
    torch.manual_seed(SEED)
    chars = vocabulary(text)
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    net = CharGRU(len(chars))
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(STEPS):
        starts = torch.randint(0, len(data) - SEQ_LEN - 1, (BATCH,), generator=generator)
        x = torch.stack([data[s : s + SEQ_LEN] for s in starts.tolist()])
        y = torch.stack([data[s + 1 : s + SEQ_LEN + 1] for s in starts.tolist()])
        logits, _ = net(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    logger.info("fables: trained %d steps, last loss %.3f", STEPS, loss.item())
    return net.eval()


def weights_path() -> Path:
    """Where the trained state dict is stored."""
    data_dir = Path(os.environ.get("MODELSERVE_DATA_DIR", ".modelserve"))
    return data_dir / "models" / "fables" / f"gru-v{FORMAT_VERSION}.pt"


def save(net: CharGRU, path: Path) -> None:
    """Write the state dict atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, vocab: int) -> CharGRU:
    """The saved network; ValueError when the file is unusable (then it is trained again)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = CharGRU(vocab)
        net.load_state_dict(state)
    except Exception as exc:
        raise ValueError(f"cannot use {path}: {exc}") from exc
    if not all(torch.isfinite(t).all() for t in net.state_dict().values()):
        raise ValueError(f"cannot use {path}: non-finite weights")
    return net.eval()


_training = threading.Lock()


def load_or_train(text: str) -> CharGRU:
    """The cached network, or a freshly trained one (then cached)."""
    path = weights_path()
    with _training:
        if path.exists():
            try:
                return load(path, len(vocabulary(text)))
            except ValueError as exc:
                logger.warning("%s; training again", exc)
        save(train(text), path)
        # Served from the saved file, as on every later start: the module that was trained
        # generated four to ten times slower than a fresh one with the same weights.
        return load(path, len(vocabulary(text)))


def count_tokens(text: str) -> int:
    """Tokens as this model counts them: words with the spaces after them."""
    return len(WORD.findall(text))


class Fables(Service[Prompt, Completion]):
    """Continue a text in the manner of Aesop's fables, one word at a time.

    A character-level GRU trained on nine fables at first start: it makes fable-like words,
    not sense. Stream it (`?stream=true`) or call it through the OpenAI-compatible chat and
    text completion routes.
    """

    name = "fables"
    openai = "completions"
    # Generation runs per stream on its own thread; predict answers a batch one by one.
    batching = batching(max_batch_size=4, max_wait_ms=0)
    max_streams = 8

    def setup(self, device: str) -> None:
        text = CORPUS.read_text(encoding="utf-8")
        self.chars = vocabulary(text)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.net = load_or_train(text)

    def count_tokens(self, text: str) -> int:
        """Tokens as OpenAI's `usage` reports them for a prompt: this model's words."""
        return count_tokens(text)

    def predict(self, batch: list[Prompt]) -> list[Completion]:
        outputs = []
        for item in batch:
            words = list(self.predict_stream(item))
            text = "".join(words)
            outputs.append(
                Completion(
                    text=text,
                    finish_reason="length" if len(words) >= item.max_tokens else "stop",
                )
            )
        return outputs

    def predict_stream(self, item: Prompt) -> Iterator[str]:
        """Words (with their trailing spaces) continuing `item.prompt`, at most max_tokens."""
        generator = torch.Generator().manual_seed(zlib.crc32(item.prompt.encode()))
        known = [self.index[c] for c in item.prompt if c in self.index] or [self.index[" "]]
        emitted = ""
        word = ""
        words = 0
        with torch.inference_mode():
            logits, state = self.net(torch.tensor([known]))
            last = logits[0, -1]
            while words < item.max_tokens:
                code = self._sample(last, item.temperature, item.top_p, generator)
                char = self.chars[code]
                # A word (with the spaces before the first one) ends where whitespace is
                # followed by a non-space character.
                if (word.strip() and not char.isspace() and word[-1].isspace()) or len(
                    word
                ) >= MAX_WORD_CHARS:
                    cut = _stop_at(emitted + word, item.stop)
                    if cut is not None:
                        if len(cut) > len(emitted):
                            yield cut[len(emitted) :]
                        return
                    yield word
                    emitted += word
                    words += 1
                    word = ""
                    if words >= item.max_tokens:
                        return
                word += char
                logits, state = self.net(torch.tensor([[code]]), state)
                last = logits[0, -1]

    def _sample(
        self, logits: torch.Tensor, temperature: float, top_p: float, generator: Any
    ) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1:
            ordered, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(ordered, dim=-1) - ordered < top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        return int(torch.multinomial(probs, 1, generator=generator))


def _stop_at(text: str, stops: list[str]) -> str | None:
    """`text` cut before its first stop string, or None when it holds none."""
    found = [i for s in stops if s and (i := text.find(s)) >= 0]
    return text[: min(found)] if found else None
