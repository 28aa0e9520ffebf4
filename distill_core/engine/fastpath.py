"""How a run uses its device: precision, memory layout, compilation, and where the data lives.

On CUDA, with the default settings ("auto"), training takes the fast path: the uint8 images
resident on the GPU (a quarter of float32's memory) and augmented there in whole batches, mixed
precision (bf16 where the GPU supports it, else fp16 with a gradient scaler), channels-last
memory for 2-D convolutional models, and the teacher in the same half precision. `compile`
adds torch.compile. On the CPU the same code runs in fp32, channels-last for 2-D convolutional
models too; `precision bf16` there runs the bf16 autocast path (what the tests use to exercise it).

No figure changes meaning between devices: the loss is computed in fp32 from fp32 copies of
both models' outputs, validation and test accuracy are measured in fp32, and every random draw
(order, crops, flips) comes from the same seeded CPU generator, whatever the device. The choices
made are recorded with the run (TrainResult.accel).
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass

import torch

from ..data.base import DataBundle, RawImages
from ..models.base import DistillNet, ModelOutput
from .augment import GEOMETRIC, augment_batch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_BACKEND = "inductor"  # torch.compile's default; the tests trace with "eager" to stay quick


@dataclass
class Accel:
    """The device choices of one training run (recorded as TrainResult.accel)."""

    device: str
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    compile: bool
    teacher_dtype: str  # the teacher's weights and activations when it runs per batch
    data: str  # how the training inputs sit on the device: "uint8 (normalised per batch)" or "float32"
    grad_scaler: bool
    tf32: bool | None = None  # CUDA only: whether cuDNN may run fp32 convolutions in TF32 (PyTorch's default)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype)

    def as_dict(self) -> dict:
        return asdict(self)


def choose_accel(settings: dict, device: torch.device, model: DistillNet, data: DataBundle) -> Accel:
    """Resolve the "auto" settings for this device and model; RuntimeError for impossible asks."""
    cuda = device.type == "cuda"
    precision = settings.get("precision", "auto")
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise RuntimeError(f"precision fp16 needs a CUDA GPU (this run trains on {device.type}); use bf16 or fp32")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise RuntimeError("precision bf16 asked for, but this GPU does not support bf16; use fp16 or auto")
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels once
    # Channels-last is faster for 2-D convolutions on the CPU too (oneDNN's blocked kernels): a
    # training step of every CNN in the zoo was 1.12-1.58x faster with it on an AVX-512 Xeon, and
    # 1.17-1.33x with oneDNN and ATen held to AVX2 (bench/bench_layout.py, docs/benchmarks.md).
    channels_last = model.feature_kind == "map2d" and settings.get("channels_last", "auto") != "off"
    return Accel(device=str(device), precision=precision, channels_last=channels_last,
                 compile=bool(settings.get("compile", False)),
                 teacher_dtype="fp32" if precision == "fp32" else precision,
                 data="uint8 (normalised per batch)" if data.raw is not None else "float32",
                 grad_scaler=precision == "fp16", tf32=torch.backends.cudnn.allow_tf32 if cuda else None)


def to_float(out: ModelOutput) -> ModelOutput:
    """fp32 copies of a model's outputs, so every loss is computed in fp32."""
    f = lambda t: t.float() if t is not None and t.dtype != torch.float32 else t  # noqa: E731
    return ModelOutput(f(out.logits), f(out.embedding), [f(x) for x in out.features])


def prepare_student(model: DistillNet, accel: Accel) -> tuple:
    """(logits function, forward_all function) of the student, laid out and compiled as chosen."""
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)
    if accel.compile:
        return _compiled(model), _compiled(model.forward_all)
    return model, model.forward_all


def prepare_teacher(teacher: DistillNet, accel: Accel) -> tuple:
    """(logits function, forward_all function) of a frozen copy of the teacher in its dtype."""
    t = copy.deepcopy(teacher) if accel.teacher_dtype != "fp32" or accel.channels_last else teacher
    t = t.to(DTYPES[accel.teacher_dtype]).eval()
    if accel.channels_last and t.feature_kind == "map2d":
        t.to(memory_format=torch.channels_last)
    for p in t.parameters():
        p.requires_grad_(False)
    if accel.compile:
        return _compiled(t), _compiled(t.forward_all)
    return t, t.forward_all


def _compiled(fn):
    return torch.compile(fn, backend=COMPILE_BACKEND)


def finish(model: DistillNet) -> None:
    """Back to the default memory layout: exports, quantisation and checkpoints expect it."""
    model.to(memory_format=torch.contiguous_format)


class DeviceInputs:
    """The training and validation inputs on the device, batched and augmented there.

    A data set that keeps uint8 images (DataBundle.raw) stays uint8 on the device; each batch is
    augmented (crops and flips move pixels, so the padding is black as in torchvision) and then
    normalised, which gives exactly the bundle's float inputs. Others use the float tensors.
    """

    def __init__(self, data: DataBundle, device: torch.device, channels_last: bool):
        self.raw = data.raw
        self.channels_last = channels_last
        if self.raw is not None:
            r = self.raw  # its statistics on the device too: no host-to-device copy per batch
            self.raw = RawImages(r.train, r.val, r.test, r.mean.to(device), r.std.to(device))
            self.x_train, self.x_val = r.train.to(device), r.val.to(device)
        else:
            self.x_train, self.x_val = data.x_train.to(device), data.x_val.to(device)
        self.y_train, self.y_val = data.y_train.to(device), data.y_val.to(device)

    def _ready(self, x: torch.Tensor) -> torch.Tensor:
        if self.raw is not None:
            x = self.raw.normalise(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def batch(self, idx: torch.Tensor, how: str | None, gen: torch.Generator) -> torch.Tensor:
        """Training inputs `idx`, augmented `how` (None: not at all), normalised, laid out."""
        x = self.x_train.index_select(0, idx)  # a third of x[idx]'s cost on a small batch (advanced indexing)
        if how is None:
            return self._ready(x)
        if self.raw is None:
            return self._ready(augment_batch(x, how, gen))
        if how in GEOMETRIC:
            return self._ready(augment_batch(x, how, gen))
        return augment_batch(self._ready(x), how, gen)

    def sample(self, n: int) -> torch.Tensor:
        return self._ready(self.x_train[:n])

    @torch.inference_mode()
    def val_accuracy(self, model, batch: int = 2048) -> float:
        """fp32 accuracy on the validation split."""
        model.eval()
        correct = 0
        for i in range(0, len(self.y_val), batch):
            correct += (model(self._ready(self.x_val[i : i + batch])).argmax(1) == self.y_val[i : i + batch]).sum().item()
        return correct / max(1, len(self.y_val))


class Stopwatch:
    """Seconds spent in the timed blocks; on CUDA measured with events (no sync per block)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._seconds = 0.0
        self._events: list = []

    @contextlib.contextmanager
    def time(self):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((start, end))
        else:
            t = time.perf_counter()
            yield
            self._seconds += time.perf_counter() - t

    @property
    def seconds(self) -> float:
        if self._events:
            torch.cuda.synchronize()
            self._seconds += sum(s.elapsed_time(e) for s, e in self._events) / 1000
            self._events.clear()
        return self._seconds
