"""GPU workloads' models, with random weights (no download): W3 ResNet-50, W2G MiniLM-shaped.

W3: a ResNet-50 (torchvision's definition) in fp16, channels-last, fed raw uint8 224x224x3
images; the pipeline is host uint8 -> device -> NCHW half -> normalize -> forward -> top-1.
W2G: a BERT with all-MiniLM-L6-v2's shape (6 layers, 384 wide, 12 heads) in fp16 with a
WordPiece tokenizer over a synthetic vocabulary; tokenize -> forward -> mean-pool -> host.

`tiny=True` swaps in a few-layer CNN on 32x32 images and a 2-layer, 64-wide BERT so the same
code path runs on a CPU in seconds (the import and wiring check CI-less machines can do).
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

W3_SIDE = 224
TINY_SIDE = 32
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def image_side(tiny: bool) -> int:
    """Height and width of a W3 image."""
    return TINY_SIDE if tiny else W3_SIDE


def sample_image(tiny: bool, seed: int = 0) -> bytes:
    """One raw HxWx3 uint8 image."""
    side = image_side(tiny)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8).tobytes()


# W3 batch sizes replayed from a captured CUDA graph (smaller batches pad up to the next one):
# at small batches ResNet-50's time is kernel launches, which a graph replays in one call.
GRAPH_BATCHES = (1, 2, 4, 8, 16)


class _Pinned:
    """A reusable page-locked host buffer (allocating one per call costs more than the copy)."""

    def __init__(self, torch: Any, dtype: Any, row_shape: tuple[int, ...]) -> None:
        self.torch, self.dtype, self.row_shape = torch, dtype, row_shape
        self.buffer = torch.empty((0, *row_shape), dtype=dtype)

    def rows(self, n: int, pin: bool) -> Any:
        if self.buffer.shape[0] < n:
            size = max(n, 2 * self.buffer.shape[0])
            shape = (size, *self.row_shape)
            self.buffer = self.torch.empty(shape, dtype=self.dtype, pin_memory=pin)
        return self.buffer[:n]


def _wait(torch: Any, device: Any) -> None:
    """Wait for the device with the thread asleep, not spinning (cudaEventBlockingSync).

    A spinning wait burns a CPU core per waiting thread, which the HTTP side of the server
    needs when several processes share the machine.
    """
    if device.type == "cuda":
        event = torch.cuda.Event(blocking=True)
        event.record()
        event.synchronize()


class ResNetPipeline:
    """W3: uint8 images in, top-1 class ids out."""

    def __init__(self, device: str, *, tiny: bool = False, graphs: bool = True) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.side = image_side(tiny)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        torch.manual_seed(0)
        if tiny:
            model: Any = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
                torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(32, 1000),
            )
        else:
            import torchvision

            model = torchvision.models.resnet50(weights=None)
        self.model = model.eval().to(
            self.device, dtype=self.dtype, memory_format=torch.channels_last
        )
        self.mean = torch.tensor(MEAN, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self._pin = self.device.type == "cuda"
        self._images = _Pinned(torch, torch.uint8, (self.side, self.side, 3))
        self._labels = _Pinned(torch, torch.int64, ())
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}
        if graphs and self.device.type == "cuda":
            self._capture()

    def _forward(self, images: Any) -> Any:
        """(n, H, W, 3) uint8 on the device -> (n,) int64 top-1 on the device."""
        x = images.permute(0, 3, 1, 2).to(self.dtype)
        x = ((x - self.mean) / self.std).contiguous(memory_format=self.torch.channels_last)
        return self.model(x).argmax(dim=1)

    def _capture(self) -> None:
        torch = self.torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            for batch in GRAPH_BATCHES:
                static_in = torch.zeros(
                    (batch, self.side, self.side, 3), dtype=torch.uint8, device=self.device
                )
                with torch.cuda.stream(stream):  # warm-up off the default stream, as capture asks
                    for _ in range(3):
                        self._forward(static_in)
                torch.cuda.current_stream().wait_stream(stream)
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = self._forward(static_in)
                self._graphs[batch] = (graph, static_in, static_out)
        torch.cuda.synchronize()

    def predict(self, images: list[bytes]) -> list[int]:
        """Top-1 class of each raw image."""
        torch = self.torch
        n = len(images)
        size = self.side * self.side * 3
        host = self._images.rows(n, self._pin)
        flat = memoryview(host.numpy()).cast("B")
        for i, image in enumerate(images):
            flat[i * size : (i + 1) * size] = image
        with torch.inference_mode():
            batch = next((b for b in GRAPH_BATCHES if b >= n), None) if self._graphs else None
            if batch is not None:
                graph, static_in, static_out = self._graphs[batch]
                static_in[:n].copy_(host, non_blocking=True)
                graph.replay()
                top = static_out[:n]
            else:
                top = self._forward(host.to(self.device, non_blocking=True))
            labels = self._labels.rows(n, self._pin)
            labels.copy_(top, non_blocking=True)
            _wait(torch, self.device)
            out: list[int] = labels.tolist()
        return out


def synthetic_vocab(size: int) -> dict[str, int]:
    """A WordPiece vocabulary with BERT's special tokens, letters, and filler words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    # Common words of the bench sentence, so it tokenizes to whole words as in a real vocab.
    words = "the quick brown fox jumps over lazy dog a an of to in is it that for on with as"
    tokens += [w for w in words.split(" ") if w not in tokens]
    tokens += [f"w{i}" for i in range(max(0, size - len(tokens)))]
    return {t: i for i, t in enumerate(tokens)}


class MiniLMShaped:
    """W2G: sentences in, 384-float (64 when tiny) normalized embeddings out."""

    def __init__(self, device: str, *, tiny: bool = False) -> None:
        import torch
        from tokenizers import Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordPiece
        from tokenizers.processors import TemplateProcessing
        from transformers import BertConfig, BertModel

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        vocab = synthetic_vocab(1000 if tiny else 30522)
        tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        tok.enable_truncation(max_length=128)
        self.tokenizer = tok
        hidden, layers, heads = (64, 2, 2) if tiny else (384, 6, 12)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=hidden * 4,
        )
        torch.manual_seed(0)
        self.model = BertModel(config).eval().to(self.device, dtype=self.dtype)
        self.dim = hidden
        self._out = _Pinned(torch, torch.float32, (hidden,))

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, mean-pooled and normalized."""
        torch = self.torch
        encoded = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encoded])
        mask = torch.tensor([e.attention_mask for e in encoded])
        with torch.inference_mode():
            ids = ids.to(self.device, non_blocking=True)
            mask = mask.to(self.device, non_blocking=True)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=1)
            host = self._out.rows(len(texts), self.device.type == "cuda")
            host.copy_(pooled, non_blocking=True)
            _wait(torch, self.device)
            out: np.ndarray = host.numpy().copy()  # the pinned buffer is reused next call
        return out
