"""Unlearning receipts: a JSON record of what was removed, how, and from which weights.

A receipt lets the model owner show a data owner (or an auditor) which forget set was unlearned,
with which method and hyper-parameters, starting from which checkpoint and producing which
checkpoint, together with the audits run before and after. Files are identified by SHA-256 of
their bytes; the forget set by the SHA-256 of its sorted positions written as ASCII
``"3,17,42"`` (:func:`lightly_unlearn.data.datamodule.forget_set_sha256`).

Two levels of protection:

* ``receipt_sha256``, the SHA-256 of the receipt's canonical JSON, catches *accidental* changes
  (a truncated copy, an editor's reformatting that changed a value). It is unkeyed: anyone who
  edits a receipt can recompute it, so on its own it proves nothing against deliberate edits.
* ``signature``: an Ed25519 signature of the same canonical JSON (:func:`sign_receipt`, key pair
  from :func:`generate_signing_key` / ``lightly-unlearn keygen``). An auditor holding only the
  public key checks it (:func:`verify_receipt` with ``public_key=``); an edited, re-hashed or
  re-signed receipt fails.

A receipt records what was run on which files; it is not a proof of forgetting: the audits in
it are the evidence about the model's behaviour.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import platform
import re
import stat
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lightly_unlearn.errors import ReceiptError, SigningKeyError  # noqa: F401  (re-exported)
from lightly_unlearn.io import atomic_write_json, json_safe, sha256_bytes, sha256_file

FORMAT = "lightly-unlearn-receipt/1"
FORGET_HASH_OF = "sha256 of the sorted forget positions joined by ',' (ASCII), e.g. '3,17,42'"
_PACKAGES = ("lightly-unlearn", "torch", "lightly", "lightning", "pytorch-lightning", "open_clip_torch")
SIGNATURE_ALGORITHM = "ed25519"
KEY_NAME = "receipt_signing.key"
PUBLIC_KEY_NAME = "receipt_signing.pub"
_UNSIGNED_FIELDS = ("receipt_sha256", "signature")  # not part of what is hashed and signed
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_MAX_RECEIPT_BYTES = 16 << 20


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_record(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """``{"path", "sha256", "bytes"}`` of an existing file, ``None`` for no path."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Cannot hash {path}: no such file.")
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _canonical(receipt: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed and signed: sorted-key compact JSON without the seal fields."""
    body = {k: v for k, v in receipt.items() if k not in _UNSIGNED_FIELDS}
    return json.dumps(json_safe(body), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def seal(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``receipt_sha256``: the SHA-256 of the receipt's canonical JSON (see :func:`_canonical`).

    Values are made JSON-safe first (``inf``/``nan`` as strings, tensors as lists), so sealing,
    and writing, can never fail on a value. Re-sealing drops a stale ``signature``.
    """
    receipt = json.loads(json.dumps(json_safe(dict(receipt)), allow_nan=False))
    receipt.pop("signature", None)
    receipt["receipt_sha256"] = sha256_bytes(_canonical(receipt))
    return receipt


# -- signing ----------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Any) -> str:
    """A short fingerprint of an Ed25519 public key: the first 16 hex digits of its SHA-256."""
    return sha256_bytes(_raw_public(public_key))[:16]


def generate_signing_key(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Create an Ed25519 key pair: ``out_dir/receipt_signing.key`` (private, PEM, mode 0600) and
    ``out_dir/receipt_signing.pub`` (public, PEM). Existing key files are never overwritten.

    Keep the private key with whoever runs unlearning; hand the public key to auditors.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from lightly_unlearn.paths import check_output_path

    folder = check_output_path(out_dir, kind="dir", what="keygen --out")
    key_path, pub_path = folder / KEY_NAME, folder / PUBLIC_KEY_NAME
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise SigningKeyError(
                f"{path} already exists; a key is never overwritten (receipts signed with it "
                "could no longer be checked). Choose another --out folder or move the old key."
            )
    folder.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from the start
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(key_path, 0o600)  # whatever the umask
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(public_pem)
    except BaseException:
        for path in (key_path, pub_path):
            if path.exists():
                path.unlink()
        raise
    return key_path, pub_path


def _read_key_file(path: str | os.PathLike, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise SigningKeyError(
            f"{what} {path}: no such file. Create a key pair with `lightly-unlearn keygen --out DIR`."
        )
    if path.stat().st_size > 64 << 10:
        raise SigningKeyError(f"{what} {path} is not a PEM key file (it is {path.stat().st_size} bytes).")
    return path.read_bytes()


def load_signing_key(path: str | os.PathLike) -> Any:
    """The Ed25519 private key in ``path`` (PEM, unencrypted, readable only by its owner)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path, "signing key")
    if b"PUBLIC KEY" in data or data.lstrip().startswith(b"ssh-"):
        raise SigningKeyError(
            f"signing key {path} is a public key; signing needs the private key "
            "(receipt_signing.key beside it, written by `lightly-unlearn keygen`)."
        )
    if b"OPENSSH PRIVATE KEY" in data:
        raise SigningKeyError(
            f"signing key {path} is in OpenSSH format; use the PEM receipt_signing.key written "
            "by `lightly-unlearn keygen`."
        )
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise SigningKeyError(
            f"signing key {path} is readable by other users (mode {mode:04o}); a private key must "
            f"be private: run `chmod 600 {path}`."
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise SigningKeyError(
            f"signing key {path} is not an unencrypted PEM private key ({str(err).splitlines()[0]}). "
            "Use the receipt_signing.key written by `lightly-unlearn keygen`."
        ) from err
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"signing key {path} is a {type(key).__name__}, not an Ed25519 key. Use the "
            "receipt_signing.key written by `lightly-unlearn keygen`."
        )
    return key


def load_public_key(path: str | os.PathLike) -> Any:
    """The Ed25519 public key in ``path`` (PEM, as written by ``lightly-unlearn keygen``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_file(path, "public key")
    if b"PRIVATE KEY" in data:
        raise SigningKeyError(
            f"{path} is a private key. Verify with the public key (receipt_signing.pub); the "
            "private key must never leave the party that signs receipts."
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as err:
        raise SigningKeyError(
            f"public key {path} is not a PEM public key ({str(err).splitlines()[0]}). Use the "
            "receipt_signing.pub written by `lightly-unlearn keygen`."
        ) from err
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"public key {path} is a {type(key).__name__}, not an Ed25519 key.")
    return key


def sign_receipt(receipt: Mapping[str, Any], key: Any) -> dict[str, Any]:
    """Seal ``receipt`` and add an Ed25519 ``signature`` of its canonical JSON.

    Args:
        receipt: A receipt (from :func:`build_receipt`).
        key: A private key path (``receipt_signing.key``) or an ``Ed25519PrivateKey``.

    Returns:
        A new receipt dict with ``receipt_sha256`` and ``signature`` =
        ``{"algorithm": "ed25519", "key_id", "public_key", "value"}`` (base64). The embedded
        public key only says *which* key signed; verification uses the auditor's own copy.
    """
    if isinstance(key, (str, os.PathLike)):
        key = load_signing_key(key)
    sealed = seal(receipt)
    public = key.public_key()
    sealed["signature"] = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id(public),
        "public_key": _b64(_raw_public(public)),
        "value": _b64(key.sign(_canonical(sealed))),
    }
    return sealed


def build_receipt(
    *,
    method: str,
    hyperparameters: Mapping[str, Any],
    forget_sha256: str,
    num_forget: int,
    num_samples: int,
    input_checkpoint: Mapping[str, Any] | None = None,
    output_checkpoint: Mapping[str, Any] | None = None,
    audits: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
) -> dict[str, Any]:
    """Assemble and seal a receipt (see module docstring for the fields)."""
    return seal(
        {
            "format": FORMAT,
            "method": method,
            "hyperparameters": dict(hyperparameters),
            "forget_set": {
                "sha256": forget_sha256,
                "hash_of": FORGET_HASH_OF,
                "num_forget": int(num_forget),
                "num_samples": int(num_samples),
            },
            "input_checkpoint": None if input_checkpoint is None else dict(input_checkpoint),
            "output_checkpoint": None if output_checkpoint is None else dict(output_checkpoint),
            "audits": None if audits is None else dict(audits),
            "training": dict(training or {}),
            "versions": library_versions(),
            "started_at": started_at,
            "finished_at": finished_at or now(),
        }
    )


def write_receipt(path: str | os.PathLike, receipt: Mapping[str, Any]) -> Path:
    """Write atomically (temporary file + ``os.replace``), as strict JSON."""
    return atomic_write_json(path, receipt)


def is_receipt(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a (small) JSON file with this package's receipt ``format``.

    Used to allow replacing an earlier receipt while refusing to overwrite any other file.
    """
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > _MAX_RECEIPT_BYTES:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (a number must be finite)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:  # different JSON readers keep different copies: refuse rather than guess
        raise ValueError(f"duplicate key(s) {dup}")
    return dict(pairs)


def _hex64(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ReceiptError(f"{field} must be 64 hex digits (a SHA-256); got {value!r:.80}.")
    return value.lower()


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReceiptError(f"{field} must be an integer; got {value!r:.80}.")
    return value


def _b64decode(value: Any, field: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or len(raw) != size:
        raise ReceiptError(f"{field} must be {size} bytes in base64; got {value!r:.80}.")
    return raw


def check_receipt(receipt: Any) -> dict[str, Any]:
    """Validate a receipt's structure; raise :class:`ReceiptError` naming the bad field.

    Only structure is checked here (types, hex digests, signature encoding), not the seal or
    the signature: a malformed receipt is an error, an intact-looking but wrong one a mismatch.
    """
    if not isinstance(receipt, Mapping):
        raise ReceiptError(f"a receipt is a JSON object; got {type(receipt).__name__}.")
    if receipt.get("format") != FORMAT:
        raise ReceiptError(f'not a lightly-unlearn receipt (expected "format": "{FORMAT}").')
    _hex64(receipt.get("receipt_sha256"), "receipt_sha256")
    if not isinstance(receipt.get("method"), str):
        raise ReceiptError(f"method must be a string; got {receipt.get('method')!r:.80}.")
    if not isinstance(receipt.get("hyperparameters"), Mapping):
        raise ReceiptError("hyperparameters must be an object.")
    forget = receipt.get("forget_set")
    if not isinstance(forget, Mapping):
        raise ReceiptError("forget_set must be an object.")
    _hex64(forget.get("sha256"), "forget_set.sha256")
    _int(forget.get("num_forget"), "forget_set.num_forget")
    _int(forget.get("num_samples"), "forget_set.num_samples")
    for name in ("input_checkpoint", "output_checkpoint"):
        record = receipt.get(name)
        if record is None:
            continue
        if not isinstance(record, Mapping):
            raise ReceiptError(f"{name} must be an object or null.")
        _hex64(record.get("sha256"), f"{name}.sha256")
    signature = receipt.get("signature")
    if signature is not None:
        if not isinstance(signature, Mapping):
            raise ReceiptError("signature must be an object.")
        if signature.get("algorithm") != SIGNATURE_ALGORITHM:
            raise ReceiptError(
                f"signature.algorithm must be {SIGNATURE_ALGORITHM!r}; got {signature.get('algorithm')!r:.40}."
            )
        _b64decode(signature.get("value"), "signature.value", 64)
        _b64decode(signature.get("public_key"), "signature.public_key", 32)
    return dict(receipt)


def read_receipt(path: str | os.PathLike) -> dict[str, Any]:
    """Read and structurally validate a receipt file; :class:`ReceiptError` (one line) if not."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > _MAX_RECEIPT_BYTES:
            raise ReceiptError(f"{path} is not a receipt ({path.stat().st_size} bytes).")
        receipt = json.loads(
            path.read_text(encoding="utf-8"),
            parse_constant=_no_constants,
            object_pairs_hook=_no_duplicates,
        )
    except FileNotFoundError as err:
        raise ReceiptError(f"No receipt at {path}.") from err
    except IsADirectoryError as err:
        raise ReceiptError(f"{path} is a folder, not a receipt file.") from err
    except RecursionError:  # e.g. 200 000 nested arrays
        raise ReceiptError(f"{path} is not a receipt (its JSON is nested too deeply).") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        if isinstance(err, ReceiptError):
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ReceiptError(f"{path} is not a readable JSON receipt: {first}") from err
    try:
        return check_receipt(receipt)
    except ReceiptError as err:
        raise ReceiptError(f"{path}: malformed receipt: {err}") from None


UNSIGNED_WARNING = (
    "UNSIGNED: {why}; its receipt_sha256 only detects accidental changes and proves nothing "
    "against deliberate edits (anyone can recompute it). Sign receipts (lightly-unlearn keygen, "
    "ReceiptCallback(signing_key=...)) and verify with --public-key."
)


def verify_receipt(
    receipt: Mapping[str, Any] | str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    public_key: Any = None,
) -> tuple[bool, str]:
    """Check that ``checkpoint`` is the receipt's output checkpoint and the receipt is intact.

    Args:
        receipt: A receipt dict or file.
        checkpoint: The checkpoint to check.
        public_key: The signer's public key (path to ``receipt_signing.pub`` or an
            ``Ed25519PublicKey``). With it, the receipt must carry a valid signature by that key.
            Without it (or for an unsigned receipt) only the unkeyed hash is checked, and the
            message's first line says the check proves nothing against deliberate edits.

    Returns:
        ``(ok, message)``: ``ok`` when the seal holds, the signature holds (if ``public_key``
        was given) and the checkpoint's SHA-256 is the recorded output checkpoint's.

    Raises:
        ReceiptError: The receipt is malformed (unreadable, wrong types, bad encodings).
        SigningKeyError: ``public_key`` cannot be read.
    """
    if isinstance(receipt, Mapping):
        receipt = check_receipt(receipt)
    else:
        receipt = read_receipt(receipt)
    if isinstance(public_key, (str, os.PathLike)):
        public_key = load_public_key(public_key)
    signature = receipt.get("signature")
    if receipt["receipt_sha256"].lower() != sha256_bytes(_canonical(receipt)):
        return False, (
            "The receipt was modified after it was written (its receipt_sha256 does not match "
            "its content); it cannot vouch for any checkpoint."
        )
    header = ""
    if public_key is not None:
        if signature is None:
            return False, (
                "UNSIGNED: the receipt carries no signature, so it cannot be attributed to the "
                "holder of the given public key (it may have been written or edited by anyone)."
            )
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(base64.b64decode(signature["value"]), _canonical(receipt))
        except InvalidSignature:
            given, named = key_id(public_key), str(signature.get("key_id"))[:16]
            if named.lower() == given:  # the right key: the content or signature changed
                return False, (
                    "SIGNATURE INVALID: the receipt was edited after it was signed, or its "
                    f"signature is corrupt (it names the given key {given}, but that key's "
                    "signature does not match its content). Do not trust it."
                )
            return False, (
                f"SIGNATURE INVALID: the receipt names signing key {named}, not the given key "
                f"{given}: it was signed by another key (or edited after signing). Check that "
                "--public-key is the signer's receipt_signing.pub. Do not trust it."
            )
        header = f"Signature OK (Ed25519 key {key_id(public_key)}). "
    else:
        why = (
            "the receipt is unsigned"
            if signature is None
            else f"the receipt is signed (key {str(signature.get('key_id'))[:16]}) but no "
            "--public-key was given to check it, so it counts as unsigned"
        )
        header = UNSIGNED_WARNING.format(why=why) + "\n"
    out = receipt.get("output_checkpoint")
    if not out:
        return False, header + (
            "The receipt records no output checkpoint (the run wrote none, or the receipt was "
            "written before saving). Write it with ReceiptCallback.write(trainer, checkpoint_path) "
            "after trainer.save_checkpoint(checkpoint_path)."
        )
    path = Path(checkpoint)
    if not path.is_file():
        return False, header + f"Checkpoint {path} does not exist."
    actual = sha256_file(path)
    if actual != out["sha256"].lower():
        return False, header + (
            f"MISMATCH: {path} has sha256 {actual}, but the receipt's output checkpoint "
            f"({out.get('path')}) has sha256 {out['sha256']}. This is not the checkpoint the "
            "unlearning run produced (or it was modified since)."
        )
    forget = receipt["forget_set"]
    return True, header + (
        f"OK: {path} is the output of {receipt['method']} unlearning "
        f"{forget['num_forget']} of {forget['num_samples']} samples "
        f"(forget-set sha256 {forget['sha256'][:16]}…), finished {receipt.get('finished_at')}."
    )
