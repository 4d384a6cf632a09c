"""The page's options, defined once: the CLI flags, the MLproject parameters and the limits the
server enforces come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from leukml.common.errors import LeukmlError
from leukml.common.options import option, part

DEFAULT_MODEL_URI = "models:/leukml-all-classifier@champion"
DEFAULT_PORT = 8501


@dataclass(frozen=True)
class Limits:
    """What one upload may hold, and how the page sends it (one model call per chunk)."""

    max_files: int = option(500, "Most images one upload may hold (a zip's images counted).")
    max_bytes: int = option(20 * 1024 * 1024, "Largest image file accepted, in bytes.")
    chunk: int = option(16, "Images per request: one batched model call each; the progress bar's step.")
    max_pixels: int = option(
        16_000_000,
        "Most pixels one request's images may hold together (from their headers, before decoding); "
        "an image past it gets a message.",
    )
    max_zip_bytes: int = option(
        256 * 1024 * 1024, "Most bytes a zip's images may inflate to, together (counted as they inflate)."
    )

    def __post_init__(self) -> None:
        for name in ("max_files", "max_bytes", "chunk", "max_pixels", "max_zip_bytes"):
            if getattr(self, name) < 1:
                raise LeukmlError(f"--{name.replace('_', '-')} {getattr(self, name)}; use a positive number")

    @property
    def max_request_bytes(self) -> int:
        """The largest body of one request: a chunk of files at the limit, base64 (4/3), and JSON."""
        return self.chunk * (self.max_bytes * 4 // 3 + 4096) + 4096


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class AppConfig:
    model_uri: str = option(
        DEFAULT_MODEL_URI, "The registered version that answers: models:/NAME@ALIAS or models:/NAME/VERSION."
    )
    url: str = option(
        "",
        "A running `mlflow models serve` of that version to answer instead (Grad-CAM stays in this "
        "process); empty: load the model here.",
    )
    host: str = option("127.0.0.1", "Address to bind; any but loopback needs a token in $LEUKML_APP_TOKEN.")
    port: int = option(DEFAULT_PORT, "Port to listen on.")
    allowed_hosts: tuple[str, ...] = option(
        (),
        "A name the page is served under (its DNS name, a proxy's): requests naming another host "
        "are refused, against DNS rebinding. The bound address (and localhost) need none.",
        cli="allowed_host",
        parse=_names,
        repeat=True,
    )
    limits: Limits = part(Limits)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise LeukmlError(f"--port {self.port}; use 1-65535")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise LeukmlError(f"--url {self.url!r}; give the server's address, e.g. http://127.0.0.1:5001")
