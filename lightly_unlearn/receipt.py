"""Unlearning receipts: a signed JSON record of what was removed, how, and which weights resulted.

A receipt lets the model owner show a data owner (or an auditor) which forget set was unlearned,
with which method and hyper-parameters, starting from which checkpoint and ending in which
weights, together with the audits run before and after (``docs/receipts.md``). It commits to:

* the unlearned **weights**, by a digest of the state dict (:mod:`lightly_unlearn.weights_digest`):
  any file holding exactly those weights verifies (a Lightning checkpoint, a ``ModelCheckpoint``
  file, ``torch.save(model.state_dict())``); files are also recorded by SHA-256 of their bytes;
* the **forget set by content**: a Merkle root over salted per-item content hashes
  (:mod:`lightly_unlearn.forget_commitment`). A data owner checks their own file against it with a
  deletion proof (:func:`verify_deletion`); the receipt alone reveals no item's hash.

Two levels of protection:

* ``receipt_sha256``, the SHA-256 of the receipt's canonical JSON, catches *accidental* changes
  (a truncated copy, an editor's reformatting that changed a value). It is unkeyed: anyone who
  edits a receipt can recompute it, so on its own it proves nothing against deliberate edits.
* ``signature``: an Ed25519 signature (:func:`sign_receipt`, key pair from
  :func:`generate_signing_key` / ``lightly-unlearn keygen``) of the canonical JSON of every field
  (``receipt_sha256`` and the signature's own ``algorithm``, ``key_id`` and ``public_key``
  included; only its ``value`` is left out). An auditor holding only the public key checks it
  (:func:`verify_receipt` with ``public_key=``); an edited, re-hashed or re-signed receipt fails.

Format ``lightly-unlearn-receipt/1`` receipts (earlier versions: a file hash and a hash of the
forget *positions*; ``signature.key_id`` not signed) still verify against their output file with
:func:`verify_receipt`, which says so; they carry no content commitment, so
:func:`verify_deletion` refuses them.

A receipt records what was run on which data; it is not a proof of forgetting: the audits in
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

from lightly_unlearn.deprecation import moved_names
from lightly_unlearn.errors import ConfigurationError, ReceiptError, SigningKeyError
from lightly_unlearn.forget_commitment import (
    COMMITMENT_SCHEME,
    CONTENT_KINDS,
    ForgetCommitment,
    content_sha256,
    proof_root,
    read_proof,
)
from lightly_unlearn.io import (
    atomic_write_json,
    json_safe,
    loads_strict_json,
    read_bounded,
    sha256_bytes,
    sha256_file,
)
from lightly_unlearn.weights_digest import SCHEME as WEIGHTS_SCHEME
from lightly_unlearn.weights_digest import checkpoint_state_dict, state_dict_sha256

# each name has one home: the forget-set commitment and the weights digest are their own modules
__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("commit_files", "commit_forget_set", "forget_set_commitment", "write_proofs"),
                    "lightly_unlearn.forget_commitment"),
    "weights_record": "lightly_unlearn.weights_digest",
})

FORMAT = "lightly-unlearn-receipt/2"
FORMAT_V1 = "lightly-unlearn-receipt/1"
_FORMATS = (FORMAT, FORMAT_V1)
_PACKAGES = ("lightly-unlearn", "torch", "lightly", "lightning", "pytorch-lightning", "open_clip_torch")
SIGNATURE_ALGORITHM = "ed25519"
KEY_NAME = "receipt_signing.key"
PUBLIC_KEY_NAME = "receipt_signing.pub"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
MAX_RECEIPT_BYTES = 16 << 20
MAX_RECEIPT_DEPTH = 64


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


def _canonical(receipt: Mapping[str, Any], *, seal_included: bool = False) -> bytes:
    """Sorted-key compact JSON of what is hashed (``receipt_sha256``) or, with
    ``seal_included=True``, signed: every field but the signature's ``value`` (format /1: every
    field but ``receipt_sha256`` and ``signature``, for both)."""
    if receipt.get("format") == FORMAT_V1:
        body = {k: v for k, v in receipt.items() if k not in ("receipt_sha256", "signature")}
    else:
        body = {k: v for k, v in receipt.items() if seal_included or k != "receipt_sha256"}
        if isinstance(body.get("signature"), Mapping):
            body["signature"] = {k: v for k, v in body["signature"].items() if k != "value"}
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
        ``{"algorithm": "ed25519", "key_id", "public_key", "value"}`` (base64); ``value`` signs
        every other field, the signature's header included. The embedded public key only says
        *which* key signed; verification uses the auditor's own copy.
    """
    if isinstance(key, (str, os.PathLike)):
        key = load_signing_key(key)
    body = seal(receipt)  # JSON-safe, without a stale signature
    if body.get("format") == FORMAT_V1:
        raise ReceiptError(f"{FORMAT_V1} receipts cannot be signed; build a {FORMAT} receipt.")
    public = key.public_key()
    body["signature"] = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id(public),
        "public_key": _b64(_raw_public(public)),
    }
    body["receipt_sha256"] = sha256_bytes(_canonical(body))  # covers the signature's header
    body["signature"]["value"] = _b64(key.sign(_canonical(body, seal_included=True)))
    return body


def build_receipt(
    *,
    method: str,
    hyperparameters: Mapping[str, Any],
    weights: Mapping[str, Any],
    num_forget: int,
    num_samples: int,
    forget_commitment: ForgetCommitment | None = None,
    commitment_missing: str | None = None,
    input_checkpoint: Mapping[str, Any] | None = None,
    output_checkpoint: Mapping[str, Any] | None = None,
    audits: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
) -> dict[str, Any]:
    """Assemble and seal a receipt.

    Args:
        weights: The unlearned weights' record, ``weights_digest.weights_record(state_dict)``.
        forget_commitment: The forget set committed by content (its root goes in the receipt,
            its proofs to the data owners); ``None`` with ``commitment_missing`` saying why.
        input_checkpoint: ``file_record`` of the checkpoint the run started from, if any.
        output_checkpoint: ``file_record`` of a saved file holding the final weights, if any.
    """
    if forget_commitment is None and not commitment_missing:
        raise ReceiptError("a receipt without a forget-set commitment must say why (commitment_missing=...).")
    return seal(
        {
            "format": FORMAT,
            "method": method,
            "hyperparameters": dict(hyperparameters),
            "weights": dict(weights),
            "forget_set": {
                "num_forget": int(num_forget),
                "num_samples": int(num_samples),
                "commitment": None if forget_commitment is None else forget_commitment.receipt_field(),
                "commitment_missing": None if forget_commitment is not None else str(commitment_missing),
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
        if not path.is_file():
            return False
        data = loads_strict_json(read_bounded(path, MAX_RECEIPT_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") in _FORMATS


# -- reading and checking structure ---------------------------------------------------------------
def _hex(value: Any, field: str, pattern: re.Pattern[str] = _HEX64) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        digits = 64 if pattern is _HEX64 else 16
        raise ReceiptError(f"{field} must be {digits} hex digits; got {value!r:.80}.")
    return value.lower()


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReceiptError(f"{field} must be an integer; got {value!r:.80}.")
    return value


def _object(value: Any, field: str, *, nullable: bool = False) -> Mapping[str, Any] | None:
    if value is None and nullable:
        return None
    if not isinstance(value, Mapping):
        raise ReceiptError(f"{field} must be an object{' or null' if nullable else ''}.")
    return value


def _b64decode(value: Any, field: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or len(raw) != size:
        raise ReceiptError(f"{field} must be {size} bytes in base64; got {value!r:.80}.")
    return raw


def _check_forget_set(forget: Mapping[str, Any], version: str) -> None:
    _int(forget.get("num_forget"), "forget_set.num_forget")
    _int(forget.get("num_samples"), "forget_set.num_samples")
    if version == FORMAT_V1:
        _hex(forget.get("sha256"), "forget_set.sha256")
        return
    commitment = _object(forget.get("commitment"), "forget_set.commitment", nullable=True)
    if commitment is None:
        if not isinstance(forget.get("commitment_missing"), str):
            raise ReceiptError("forget_set.commitment_missing must say why there is no commitment.")
        return
    if commitment.get("scheme") != COMMITMENT_SCHEME:
        raise ReceiptError(f"forget_set.commitment.scheme must be {COMMITMENT_SCHEME!r}.")
    _hex(commitment.get("root"), "forget_set.commitment.root")
    if commitment.get("content") not in CONTENT_KINDS:
        raise ReceiptError(f"forget_set.commitment.content must be one of {sorted(CONTENT_KINDS)}.")
    _int(commitment.get("num_items"), "forget_set.commitment.num_items")


def check_receipt(receipt: Any) -> dict[str, Any]:
    """Validate a receipt's structure; raise :class:`ReceiptError` naming the bad field.

    Only structure is checked here (types, hex digests, signature encoding), not the seal or
    the signature: a malformed receipt is an error, an intact-looking but wrong one a mismatch.
    """
    if not isinstance(receipt, Mapping):
        raise ReceiptError(f"a receipt is a JSON object; got {type(receipt).__name__}.")
    version = receipt.get("format")
    if version not in _FORMATS:
        raise ReceiptError(f'not a lightly-unlearn receipt (expected "format": "{FORMAT}").')
    _hex(receipt.get("receipt_sha256"), "receipt_sha256")
    if not isinstance(receipt.get("method"), str):
        raise ReceiptError(f"method must be a string; got {receipt.get('method')!r:.80}.")
    _object(receipt.get("hyperparameters"), "hyperparameters")
    _check_forget_set(_object(receipt.get("forget_set"), "forget_set"), version)
    if version == FORMAT:
        weights = _object(receipt.get("weights"), "weights")
        if weights.get("scheme") != WEIGHTS_SCHEME:
            raise ReceiptError(f"weights.scheme must be {WEIGHTS_SCHEME!r}; got {weights.get('scheme')!r:.60}.")
        _hex(weights.get("sha256"), "weights.sha256")
        _int(weights.get("num_tensors"), "weights.num_tensors")
        _int(weights.get("num_elements"), "weights.num_elements")
    for name in ("input_checkpoint", "output_checkpoint"):
        record = _object(receipt.get(name), name, nullable=True)
        if record is not None:
            _hex(record.get("sha256"), f"{name}.sha256")
    signature = _object(receipt.get("signature"), "signature", nullable=True)
    if signature is not None:
        if signature.get("algorithm") != SIGNATURE_ALGORITHM:
            raise ReceiptError(
                f"signature.algorithm must be {SIGNATURE_ALGORITHM!r}; got {signature.get('algorithm')!r:.40}."
            )
        _b64decode(signature.get("value"), "signature.value", 64)
        _b64decode(signature.get("public_key"), "signature.public_key", 32)
        if version == FORMAT:
            _hex(signature.get("key_id"), "signature.key_id", _HEX16)
    return dict(receipt)


def _display(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def read_receipt(path: str | os.PathLike) -> dict[str, Any]:
    """Read and structurally validate a receipt; :class:`ReceiptError` (one line) if not.

    ``path`` may be a file, a pipe / FIFO or ``"-"`` (standard input); whatever it is, at most
    16 MiB are read, and the JSON is strict: no ``NaN``/``Infinity`` or overflowing (``1e400``)
    number literals, no duplicate keys, at most 64 levels of nesting.
    """
    name = _display(path)
    try:
        receipt = loads_strict_json(read_bounded(path, MAX_RECEIPT_BYTES), max_depth=MAX_RECEIPT_DEPTH)
    except FileNotFoundError as err:
        raise ReceiptError(f"No receipt at {name}.") from err
    except IsADirectoryError as err:
        raise ReceiptError(f"{name} is a folder, not a receipt file.") from err
    except OSError as err:
        raise ReceiptError(f"cannot read {name}: {err.strerror or err}.") from err
    except ValueError as err:
        raise ReceiptError(f"{name} is not a readable JSON receipt: {err}.") from err
    try:
        return check_receipt(receipt)
    except ReceiptError as err:
        raise ReceiptError(f"{name}: malformed receipt: {err}") from None


# -- verification ---------------------------------------------------------------------------------
UNSIGNED_WARNING = (
    "UNSIGNED: {why}; its receipt_sha256 only detects accidental changes and proves nothing "
    "against deliberate edits (anyone can recompute it). Sign receipts (lightly-unlearn keygen, "
    "ReceiptCallback(signing_key=...)) and verify with --public-key."
)


def _load(receipt: Mapping[str, Any] | str | os.PathLike, public_key: Any) -> tuple[dict[str, Any], Any]:
    receipt = check_receipt(receipt) if isinstance(receipt, Mapping) else read_receipt(receipt)
    if isinstance(public_key, (str, os.PathLike)):
        public_key = load_public_key(public_key)
    return receipt, public_key


def _authenticate(receipt: Mapping[str, Any], public_key: Any) -> tuple[bool, str]:
    """``(False, why)`` when the seal or (with ``public_key``) the signature fails, else
    ``(True, header)``: the header says whose signature held, or that nothing did."""
    signature = receipt.get("signature")
    if receipt["receipt_sha256"].lower() != sha256_bytes(_canonical(receipt)):
        return False, (
            "The receipt was modified after it was written (its receipt_sha256 does not match "
            "its content); it cannot vouch for anything."
        )
    if public_key is None:
        why = (
            "the receipt is unsigned"
            if signature is None
            else f"the receipt is signed (key {str(signature.get('key_id'))[:16]}) but no "
            "--public-key was given to check it, so it counts as unsigned"
        )
        return True, UNSIGNED_WARNING.format(why=why) + "\n"
    if signature is None:
        return False, (
            "UNSIGNED: the receipt carries no signature, so it cannot be attributed to the "
            "holder of the given public key (it may have been written or edited by anyone)."
        )
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(signature["value"]), _canonical(receipt, seal_included=True))
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
    note = (
        f" (format {FORMAT_V1}: its signature.key_id is not covered by the signature)"
        if receipt.get("format") == FORMAT_V1
        else ""
    )
    return True, f"Signature OK (Ed25519 key {key_id(public_key)}){note}. "


def _summary(receipt: Mapping[str, Any]) -> str:
    forget = receipt["forget_set"]
    return (
        f"{receipt['method']} unlearning of {forget['num_forget']} of {forget['num_samples']} "
        f"samples, finished {receipt.get('finished_at')}"
    )


def _how_weights_differ(state: Mapping[str, Any], weights: Mapping[str, Any]) -> str:
    """What differs between a state dict and a receipt's weights record, for the message."""
    count = sum(t.numel() for t in state.values())
    if (len(state), count) != (weights["num_tensors"], weights["num_elements"]):
        return (f"it holds {len(state)} tensors ({count} values), the receipt's weights "
                f"{weights['num_tensors']} tensors ({weights['num_elements']} values)")
    return "same tensor count and sizes, different values, names or dtypes"


def _proof_argument(proof: Mapping[str, Any] | str | os.PathLike) -> tuple[dict[str, Any], str]:
    """``(proof, how to name it)`` from a proof dict or a ``.proof.json`` file."""
    if isinstance(proof, Mapping):
        return json.loads(json.dumps(dict(proof))), "the proof"
    name = _display(proof)
    try:
        return read_proof(proof), name
    except ValueError as err:
        raise ReceiptError(str(err)) from None
    except OSError as err:
        raise ReceiptError(f"cannot read proof {name}: {err.strerror or err}.") from None


def verify_receipt(
    receipt: Mapping[str, Any] | str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    public_key: Any = None,
) -> tuple[bool, str]:
    """Check that ``checkpoint`` holds the weights the receipt vouches for, and the receipt is intact.

    The checkpoint may be any file holding exactly the unlearned weights: the receipt's recorded
    output file (same SHA-256, not even loaded), or a Lightning checkpoint or
    ``torch.save(model.state_dict())`` file whose state dict has the receipt's weights digest
    (loaded with ``weights_only=True``). A format /1 receipt is checked against its recorded
    output file's SHA-256 only.

    Args:
        receipt: A receipt dict or file (``"-"``: standard input).
        checkpoint: The checkpoint to check.
        public_key: The signer's public key (path to ``receipt_signing.pub`` or an
            ``Ed25519PublicKey``). With it, the receipt must carry a valid signature by that key.
            Without it (or for an unsigned receipt) only the unkeyed hash is checked, and the
            message's first line says the check proves nothing against deliberate edits.

    Returns:
        ``(ok, message)``.

    Raises:
        ReceiptError: The receipt is malformed (unreadable, wrong types, bad encodings).
        SigningKeyError: ``public_key`` cannot be read.
        ConfigurationError: The checkpoint cannot be read (missing, not loadable with
            ``weights_only=True``, no state dict).
    """
    receipt, public_key = _load(receipt, public_key)
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigurationError(f"checkpoint {path}: no such file.")
    ok, header = _authenticate(receipt, public_key)
    if not ok:
        return False, header
    out = receipt.get("output_checkpoint")
    if out and sha256_file(path) == out["sha256"].lower():
        return True, header + (
            f"OK: {path} is the recorded output checkpoint (same SHA-256) of {_summary(receipt)}."
        )
    if receipt["format"] == FORMAT_V1:  # it binds one file's bytes, which these are not
        return False, header + _v1_mismatch(path, out)
    weights = receipt["weights"]
    state = checkpoint_state_dict(path)
    if state_dict_sha256(state) != weights["sha256"].lower():
        return False, header + (
            f"MISMATCH: {path} does not hold the weights this receipt vouches for "
            f"({_how_weights_differ(state, weights)}). It is not the model the unlearning run "
            "produced (or it was modified since)."
        )
    return True, header + (
        f"OK: {path} holds exactly the weights (digest {weights['sha256'][:16]}…) of {_summary(receipt)}."
    )


def verify_deletion(
    receipt: Mapping[str, Any] | str | os.PathLike,
    proof: Mapping[str, Any] | str | os.PathLike,
    file: str | os.PathLike,
    *,
    public_key: Any = None,
) -> tuple[bool, str]:
    """Check that ``file``'s content is an item of the forget set the receipt commits to.

    ``ok`` means: the receipt is intact (and signed by ``public_key`` when given), the proof is
    this receipt's, and the file's content hash, salted and folded up the proof's path, gives the
    receipt's root. That proves the model owner *committed to unlearning* this content; whether
    its influence is gone is the claim of the audits in the receipt. Without ``public_key`` the
    receipt counts as unsigned: anyone could have made a receipt and proof for any file, and the
    message's first line says so.

    Args:
        receipt: A receipt dict or file (``"-"``: standard input).
        proof: A proof dict (checked as :func:`read_proof` does) or ``.proof.json`` file.
        file: The data owner's own file (kind of content: see
            :mod:`lightly_unlearn.forget_commitment`).
        public_key: As in :func:`verify_receipt`.

    Returns:
        ``(ok, message)``.

    Raises:
        ReceiptError: The receipt or proof is malformed, or the receipt is of format /1.
        SigningKeyError: ``public_key`` cannot be read.
        ConfigurationError: ``file`` cannot be read as the committed kind of content.
    """
    receipt, public_key = _load(receipt, public_key)
    if receipt["format"] == FORMAT_V1:
        raise ReceiptError(
            f"the receipt is of format {FORMAT_V1}, which commits to forget positions, not to "
            "content: no deletion proof can be checked against it."
        )
    proof, proof_name = _proof_argument(proof)
    ok, header = _authenticate(receipt, public_key)
    if not ok:
        return False, header
    ok, message = _check_proof(receipt, proof, proof_name, file)
    return ok, header + message


def _v1_mismatch(path: Path, out: Mapping[str, Any] | None) -> str:
    """Why a format /1 receipt does not vouch for ``path``: it binds its output file's bytes only."""
    if not out:
        return f"The {FORMAT_V1} receipt records no output checkpoint."
    return (f"MISMATCH: {path} is not the receipt's output checkpoint {out.get('path')} (its "
            f"SHA-256 differs). This {FORMAT_V1} receipt binds that one file's bytes only.")


def _check_proof(
    receipt: Mapping[str, Any], proof: Mapping[str, Any], proof_name: str, file: str | os.PathLike
) -> tuple[bool, str]:
    """Whether ``file``'s content, salted and folded up ``proof``'s path, gives the receipt's root
    (the receipt already authenticated); the message says why not."""
    commitment = receipt["forget_set"]["commitment"]
    if commitment is None:
        return False, (
            "The receipt commits to no forget-set content "
            f"({receipt['forget_set']['commitment_missing']}); no deletion can be shown with it."
        )
    root = commitment["root"].lower()
    if str(proof.get("root", "")).lower() != root:
        return False, (
            f"This proof belongs to another receipt: {proof_name} is for the forget set with root "
            f"{str(proof.get('root'))[:16]}…, this receipt's root is {root[:16]}…. Ask the model "
            "owner for the proof that came with this receipt."
        )
    if proof_root(proof, content_sha256(file, commitment["content"])) != root:
        return False, (
            f"NOT COMMITTED: the content of {file} ({CONTENT_KINDS[commitment['content']]}) does not "
            f"lead to this receipt's root with {proof_name} (made for {proof.get('item')!r}): it is "
            "another file, the file was edited, or the proof was altered."
        )
    return True, (
        f"OK: the content of {file} is forget item {proof.get('item')!r} of this receipt "
        f"({commitment['num_items']} items committed by content, root {root[:16]}…): the model "
        f"owner committed to unlearning it with {_summary(receipt)}. Whether its influence is "
        "gone is the audits' claim (the receipt's audits section), not this check's."
    )
