"""WeChat signatures and WXBizMsgCrypt AES against the official / wechatpy vectors."""
from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.config import Settings, WeChatAccount, decode_aes_key
from connectors.wechat.crypto import (AppIdMismatch, CryptoError, WeChatCrypto, check_signature, pkcs7_pad,
                                      pkcs7_unpad, signature)
from connectors.wechat.xml import parse_fields

TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx49f0ab532d5d035a"
TIMESTAMP = "1411525903"
NONCE = "461056294"
MSG_SIGNATURE = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
# wechatpy tests/test_crypto.py, test_decrypt_message
ENCRYPTED = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6y"
    "dJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/T"
    "ywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5"
    "t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)
# wechatpy test_encrypt_message: fixed random prefix → known ciphertext and signature
REPLY = """<xml>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[test]]></Content>
<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>
<ToUserName><![CDATA[messense]]></ToUserName>
<AgentID>1</AgentID>
<CreateTime>1411525903</CreateTime>
</xml>"""
REPLY_ENCRYPTED = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl"
    "5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf"
    "03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYj"
    "xxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
)
REPLY_SIGNATURE = "407518b7649e86ef23978113f92d27afa9296533"
OTHER_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def crypto(**kwargs) -> WeChatCrypto:
    return WeChatCrypto(TOKEN, kwargs.pop("key", AES_KEY), kwargs.pop("app_id", APP_ID), **kwargs)


def test_official_server_verification_vector():
    expected = "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert signature("AAAAA", "1714036504", "1514711492") == expected
    assert check_signature(expected, "AAAAA", "1714036504", "1514711492")
    assert check_signature(expected.upper(), "AAAAA", "1714036504", "1514711492")
    assert not check_signature(expected, "AAAAA", "1714036504", "1514711493")
    assert not check_signature("", "AAAAA", "1714036504", "1514711492")
    assert not check_signature(None, "AAAAA", "1714036504", "1514711492")
    assert not check_signature("ä" * 40, "AAAAA", "1714036504", "1514711492")


def test_msg_signature_and_decrypt_known_answer():
    c = crypto()
    assert c.check_msg_signature(MSG_SIGNATURE, TIMESTAMP, NONCE, ENCRYPTED)
    assert not c.check_msg_signature(MSG_SIGNATURE, TIMESTAMP, "461056295", ENCRYPTED)
    decrypted = c.decrypt(ENCRYPTED)
    fields = parse_fields(decrypted.message)
    assert fields["Content"] == "test"
    assert fields["FromUserName"] == "messense"
    assert decrypted.key == decode_aes_key(AES_KEY)


def test_encrypt_known_answer_with_fixed_random():
    encrypted, msg_signature = crypto().seal(REPLY.encode(), TIMESTAMP, NONCE, random16=b"1234567890123456")
    assert encrypted == REPLY_ENCRYPTED
    assert msg_signature == REPLY_SIGNATURE


def test_wecom_echostr_vector():
    echostr = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
    c = crypto()
    assert c.check_msg_signature("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", echostr)
    assert not c.check_msg_signature("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424", echostr)
    assert c.decrypt(echostr).message  # decrypts under the right AppID


@pytest.mark.parametrize("message", [b"", b"x", "你好，核酸检测在哪做？".encode(), b"<xml/>" * 500])
def test_round_trip(message):
    c = crypto()
    assert c.decrypt(c.encrypt(message)).message == message
    assert c.encrypt(message) != c.encrypt(message)  # random prefix


def test_previous_key_still_decrypts_and_replies_use_it():
    old = crypto(key=OTHER_KEY)
    rotated = crypto(key=AES_KEY, previous_encoding_aes_key=OTHER_KEY)
    decrypted = rotated.decrypt(old.encrypt(b"hello"))
    assert decrypted.message == b"hello"
    assert decrypted.key == decode_aes_key(OTHER_KEY)
    assert old.decrypt(rotated.encrypt(b"reply", key=decrypted.key)).message == b"reply"
    with pytest.raises(CryptoError):
        crypto(key=AES_KEY).decrypt(old.encrypt(b"hello"))  # without the fallback


def test_wrong_app_id_rejected():
    other = crypto(app_id="wx0000000000000000")
    with pytest.raises(AppIdMismatch):
        crypto().decrypt(other.encrypt(b"hello"))
    with pytest.raises(AppIdMismatch):
        crypto(previous_encoding_aes_key=OTHER_KEY).decrypt(other.encrypt(b"hello"))


def _raw_encrypt(plain: bytes, key: bytes | None = None) -> str:
    key = key or decode_aes_key(AES_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


@pytest.mark.parametrize("pad", [0, 33, 255])
def test_padding_out_of_range_rejected(pad):
    body = b"r" * 16 + struct.pack(">I", 5) + b"hello" + APP_ID.encode()
    body += b"\0" * (-(len(body) + 1) % 32) + bytes([pad])  # last byte claims `pad`
    with pytest.raises(CryptoError):
        crypto().decrypt(_raw_encrypt(body))


def test_inconsistent_padding_and_length_rejected():
    body = b"r" * 16 + struct.pack(">I", 5) + b"hello" + APP_ID.encode()
    padded = pkcs7_pad(body)
    broken = padded[:-2] + bytes([padded[-1] ^ 1]) + padded[-1:]
    with pytest.raises(CryptoError):
        crypto().decrypt(_raw_encrypt(broken))
    too_long = pkcs7_pad(b"r" * 16 + struct.pack(">I", 10_000) + b"hello" + APP_ID.encode())
    with pytest.raises(CryptoError):
        crypto().decrypt(_raw_encrypt(too_long))


@pytest.mark.parametrize("bad", ["", "not base64!!", "AAAA", base64.b64encode(b"x" * 33).decode()])
def test_garbage_ciphertext_rejected(bad):
    with pytest.raises(CryptoError):
        crypto().decrypt(bad)


def test_pkcs7_blocks_are_32_bytes():
    assert len(pkcs7_pad(b"")) == 32 and pkcs7_pad(b"")[-1] == 32
    assert len(pkcs7_pad(b"a" * 31)) == 32
    assert pkcs7_unpad(pkcs7_pad(b"abc")) == b"abc"


def test_tampered_ciphertext_rejected():
    raw = bytearray(base64.b64decode(ENCRYPTED))
    raw[-1] ^= 0x55
    with pytest.raises(CryptoError):
        crypto().decrypt(base64.b64encode(bytes(raw)).decode())


def test_repr_and_errors_hide_secrets():
    c = crypto()
    assert AES_KEY not in repr(c)
    account = WeChatAccount(name="main", token=TOKEN, app_id=APP_ID, app_secret="s3cret", encoding_aes_key=AES_KEY)
    assert "s3cret" not in repr(account) and AES_KEY not in repr(account) and TOKEN not in repr(account)


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("HOTLINE_WECHAT__ACCOUNTS",
                       f'[{{"name":"main","token":"{TOKEN}","app_id":"{APP_ID}","encoding_aes_key":"{AES_KEY}"}}]')
    monkeypatch.setenv("HOTLINE_WECHAT__API_BASE", "http://127.0.0.1:9/")
    settings = Settings().wechat
    assert settings.account("main").app_id == APP_ID
    assert settings.api_base == "http://127.0.0.1:9"
    with pytest.raises(ValueError) as error:
        WeChatAccount(name="main", token=TOKEN, app_id=APP_ID, encoding_aes_key="short-secret-value")
    assert "short-secret-value" not in str(error.value)
    monkeypatch.setenv("HOTLINE_WECHAT__ACCOUNTS", '[{"name":"x","token":"t0ps3cret-token-too-long-for-wechat-xx","app_id":"a"}]')
    with pytest.raises(ValueError) as error:
        Settings()
    assert "t0ps3cret" not in str(error.value)
    with pytest.raises(ValueError):
        WeChatAccount(name="bad name!", token=TOKEN, app_id=APP_ID)
