"""WeChat signatures and the WXBizMsgCrypt message encryption ("safe mode").

Ciphertext = base64(AES-256-CBC(key, iv=key[:16], PKCS#7/32(
    16 random bytes + 4-byte big-endian length + message + AppID))).
Every check fails the same way (``CryptoError``) and nothing secret is put in
an exception message, so callers can log errors safely.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.config import decode_aes_key

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16


class CryptoError(ValueError):
    """The ciphertext cannot be trusted (bad base64, padding, length or AppID)."""


class AppIdMismatch(CryptoError):
    """Decrypted fine, but for another account."""


def signature(*parts: str) -> str:
    """sha1 of the sorted concatenation: the plain signature (token, timestamp, nonce)
    and the msg_signature (token, timestamp, nonce, Encrypt) alike."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def check_signature(expected: str | None, *parts: str) -> bool:
    """Constant-time comparison, so the signature cannot be guessed byte by byte."""
    if not expected or any(p is None for p in parts):
        return False
    return hmac.compare_digest(signature(*parts).encode(), expected.strip().lower().encode("utf-8", "replace"))


def pkcs7_pad(data: bytes, block: int = BLOCK) -> bytes:
    amount = block - len(data) % block
    return data + bytes([amount]) * amount


def pkcs7_unpad(data: bytes, block: int = BLOCK) -> bytes:
    if not data or len(data) % 16:
        raise CryptoError("ciphertext length is not a whole number of blocks")
    amount = data[-1]
    if not 1 <= amount <= block or amount > len(data) or data[-amount:] != bytes([amount]) * amount:
        raise CryptoError("bad padding")
    return data[:-amount]


@dataclass(frozen=True)
class Decrypted:
    message: bytes
    key: bytes  # the key that worked: replies go out under the same key


class WeChatCrypto:
    """One account's cipher; the previous EncodingAESKey still decrypts during a key change."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str,
                 previous_encoding_aes_key: str | None = None):
        self.token = token
        self.app_id = app_id.encode("utf-8")
        self.key = decode_aes_key(encoding_aes_key)
        self.keys = [self.key]
        if previous_encoding_aes_key:
            self.keys.append(decode_aes_key(previous_encoding_aes_key))

    def __repr__(self) -> str:  # never show keys
        return f"WeChatCrypto(app_id={self.app_id.decode()!r})"

    # -- AES -------------------------------------------------------------------

    def encrypt(self, message: bytes, key: bytes | None = None, random16: bytes | None = None) -> str:
        key = key or self.key
        random16 = os.urandom(16) if random16 is None else random16
        if len(random16) != 16:
            raise ValueError("random prefix must be 16 bytes")
        plain = pkcs7_pad(random16 + struct.pack(">I", len(message)) + message + self.app_id)
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> Decrypted:
        """Try the current key, then the previous one; the AppID must match."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise CryptoError("ciphertext is not base64") from None
        if not raw or len(raw) % 16:
            raise CryptoError("ciphertext length is not a whole number of blocks")
        errors: list[CryptoError] = []
        for key in self.keys:
            try:
                return Decrypted(self._decrypt_with(raw, key), key)
            except CryptoError as exc:
                errors.append(exc)
        # The right key with the wrong AppID says more than the other key's garbage.
        raise next((e for e in errors if isinstance(e, AppIdMismatch)), errors[0])

    def _decrypt_with(self, raw: bytes, key: bytes) -> bytes:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = pkcs7_unpad(decryptor.update(raw) + decryptor.finalize())
        if len(plain) < 20:
            raise CryptoError("plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        if length > len(plain) - 20:
            raise CryptoError("bad message length")
        message, app_id = plain[20:20 + length], plain[20 + length:]
        if not hmac.compare_digest(app_id, self.app_id):
            raise AppIdMismatch("AppID does not match")
        return message

    # -- signed envelopes --------------------------------------------------------

    def check_msg_signature(self, msg_signature: str | None, timestamp: str, nonce: str, encrypted: str) -> bool:
        return check_signature(msg_signature, self.token, timestamp, nonce, encrypted)

    def seal(self, message: bytes, timestamp: str, nonce: str, key: bytes | None = None,
             random16: bytes | None = None) -> tuple[str, str]:
        """(Encrypt, MsgSignature) for an outgoing passive reply."""
        encrypted = self.encrypt(message, key=key, random16=random16)
        return encrypted, signature(self.token, timestamp, nonce, encrypted)
