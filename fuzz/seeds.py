#!/usr/bin/env python3
"""Writes the seed corpora, fuzz/corpus/<target>/seed-*: a few valid and
near-valid inputs per target. Deterministic; rerun after changing a target's
input format (see docs/FUZZING.md). Signed JWT seeds need the `cryptography`
package (Ed25519 signatures are deterministic, so the output does not change);
without it they are skipped.
"""

import base64
import json
import pathlib
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"

# --- shared -------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(prefix: str, id16: bytes, verifier32: bytes) -> str:
    payload = id16 + verifier32
    crc = zlib.crc32(prefix.encode() + payload)
    return prefix + b64(payload + struct.pack(">I", crc))


SESSION = token("sgs_", bytes(range(16)), bytes(range(32, 64)))
REFRESH = token("sgr_", bytes(range(16)), bytes(range(32, 64)))
API = token("sga_", bytes(16), b"\xff" * 32)
TOKEN_ID = b64(bytes(range(16)))  # 22 characters
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

ISS = "https://auth.example"
AUD = "https://api.example"
NOW = 1_800_000_000
SID = TOKEN_ID
ED_KID = "fuzz-ed25519"
ES_KID = "fuzz-es256"


def jwt_parts(header: dict, claims: dict) -> str:
    return b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(
        json.dumps(claims, separators=(",", ":")).encode()
    )


GOOD_CLAIMS = {
    "iss": ISS,
    "sub": "u_alice",
    "aud": AUD,
    "exp": NOW + 300,
    "iat": NOW,
    "jti": "j1",
    "client_id": "app",
    "sid": SID,
}
ED_HEADER = {"alg": "EdDSA", "typ": "at+jwt", "kid": ED_KID}


def ed25519_sign(message: bytes):
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        return None
    # The fuzz target's EdDSA key: seed 0x11 * 32.
    return Ed25519PrivateKey.from_private_bytes(b"\x11" * 32).sign(message)


def signed(header: dict, claims: dict):
    unsigned = jwt_parts(header, claims)
    sig = ed25519_sign(unsigned.encode())
    return None if sig is None else unsigned + "." + b64(sig)


# --- targets --------------------------------------------------------------------


def token_parse():
    # Mode byte 1: parse the rest as text.
    texts = {
        "valid-session": SESSION,
        "valid-refresh": REFRESH,
        "valid-apitoken": API,
        "token-id": TOKEN_ID,
        "truncated": SESSION[:-1],
        "too-long": SESSION + "A",
        "unknown-prefix": "sgx_" + SESSION[4:],
        "relabelled": "sgr_" + SESSION[4:],  # bad checksum
        "one-char-edit": SESSION[:10] + ("B" if SESSION[10] == "A" else "A") + SESSION[11:],
        "noncanonical-last": SESSION[:-1] + B64URL[B64URL.index(SESSION[-1]) ^ 1],
        "non-ascii": "sgs_" + "é" * 35,
    }
    seeds = {f"text-{name}": b"\x01" + t.encode() for name, t in texts.items()}
    # Mode byte 0: kind, 16 id bytes, 32 verifier bytes, edit position, character.
    seeds["forge-session"] = b"\x00" + b"\x00" + bytes(range(48)) + b"\x0a\x05"
    seeds["forge-apitoken-last"] = b"\x00" + b"\x02" + b"\xaa" * 48 + bytes([73, 1])
    return seeds


def cookie_header():
    lines = {
        "cookie": f"C__Host-sg_session={SESSION}",
        "cookie-among-others": f'Ca=b; __Host-sg_session="{SESSION}"; c=d',
        "cookie-empty-then-set": f"C__Host-sg_session=; __Host-sg_session={SESSION}",
        "cookie-two-headers": f"Ca=b\nC__Host-sg_session={SESSION}",
        "bearer": f"ABearer {SESSION}",
        "bearer-lowercase-wins": f"C__Host-sg_session={SESSION}\nAbearer   {REFRESH}  ",
        "bearer-empty": "ABearer   ",
        "bearer-jwt": "ABearer " + jwt_parts(ED_HEADER, GOOD_CLAIMS) + ".sig",
        "basic-ignored": f"ABasic YTpi\nC__Host-sg_session={SESSION}",
        "other-header": f"Xcookie: __Host-sg_session={SESSION}",
    }
    seeds = {k: v.encode() for k, v in lines.items()}
    seeds["cookie-not-utf8"] = b"C__Host-sg_session=\xff\xfe"
    seeds["bearer-not-utf8"] = b"ABearer \xc3\x28"
    seeds["other-cookie-not-utf8"] = b"Ca=\xff; __Host-sg_session=tok"
    return seeds


def jwt_verify():
    # `Input` is decoded by `arbitrary` 1.x: an enum variant is a little-endian
    # u32 scaled to the variant count; the last field takes the rest.
    def variant(index: int, count: int) -> bytes:
        return struct.pack("<I", (index * 2**32 + count - 1) // count)

    text = variant(0, 3)  # Input::Text(rest)
    seeds = {}
    good = signed(ED_HEADER, GOOD_CLAIMS)
    if good is not None:
        seeds["text-valid-eddsa"] = text + good.encode()
        expired = signed(ED_HEADER, {**GOOD_CLAIMS, "exp": NOW})
        seeds["text-expired"] = text + expired.encode()
        dup_claims = '{"sub":"u_admin",' + json.dumps(GOOD_CLAIMS, separators=(",", ":"))[1:]
        unsigned = jwt_parts(ED_HEADER, {}).split(".")[0] + "." + b64(dup_claims.encode())
        dup = unsigned + "." + b64(ed25519_sign(unsigned.encode()))
        seeds["text-duplicate-sub"] = text + dup.encode()
    seeds["text-alg-none"] = text + (
        jwt_parts({**ED_HEADER, "alg": "none"}, GOOD_CLAIMS) + "."
    ).encode()
    seeds["text-hs256"] = text + (
        jwt_parts({**ED_HEADER, "alg": "HS256"}, GOOD_CLAIMS) + ".AAAA"
    ).encode()
    seeds["text-path-kid"] = text + (
        jwt_parts({**ED_HEADER, "kid": "../../etc/passwd"}, GOOD_CLAIMS) + ".AAAA"
    ).encode()
    seeds["text-crit"] = text + (
        jwt_parts({**ED_HEADER, "crit": ["exp"]}, GOOD_CLAIMS) + ".AAAA"
    ).encode()
    seeds["text-two-segments"] = text + jwt_parts(ED_HEADER, GOOD_CLAIMS).encode()

    # Input::Fields: header (alg, typ, kid, crit, extra), claims (9 fields,
    # extra), signature. Field::Good is variant 1 of 5; `None`/empty `Vec` is a
    # zero byte.
    good_field = variant(1, 5)
    header = good_field * 3 + b"\x00" + b"\x00"
    claims = good_field * 9 + b"\x00"
    fields = variant(1, 3) + header + claims
    seeds["fields-valid-es256"] = fields + variant(0, 5)
    seeds["fields-valid-eddsa-kid"] = (
        variant(1, 3)
        + variant(2, 5) + b"\x00"  # alg: Near(0) = "EdDSA"
        + good_field
        + variant(2, 5) + b"\x00"  # kid: Near(0) = the EdDSA key
        + b"\x00\x00"
        + claims
        + variant(1, 5)  # Signature::Ed
    )
    seeds["fields-flipped-signature"] = fields + variant(2, 5) + b"\x00" + b"\x07\x00"
    seeds["fields-missing-exp"] = (
        variant(1, 3) + header + good_field * 3 + variant(0, 5) + good_field * 5
        + b"\x00" + variant(0, 5)
    )

    # Input::Bytes: header bytes, payload bytes (lengths from the end), signature.
    return seeds


def config_toml():
    example = f"""listen = "127.0.0.1:8080"
data_dir = "sessionguard-data"
public_origin = "http://127.0.0.1:8080"
admin_token = "0123456789abcdef0123456789abcdef"
issuer = "http://127.0.0.1:8080"
introspection_tokens = ["fedcba9876543210fedcba9876543210"]
[policy]
profile = "standard"
idle_timeout = "30m"
absolute_timeout = "12h"
max_sessions = 0
on_limit = "evict_oldest"
renewal_interval = "0s"
throttle_failures = 5
throttle_client_failures = 50
throttle_delay = "1s"
throttle_max_delay = "15m"
[profiles.admin]
idle_timeout = "5m"
[profiles.partners]
max_sessions = 2
on_limit = "reject_new"
[keys]
algorithm = "EdDSA"
rotation_period = "30d"
[audit]
mirror = "off"
retention = "90d"
[store]
kind = "embedded"
[server]
header_read_timeout = "10s"
request_timeout = "30s"
keep_alive_timeout = "75s"
max_connections = 1000
shutdown_grace = "10s"
password_hash_queue = 32
"""
    texts = {
        "full-example": example,
        "empty": "",
        "redis": '[store]\nkind = "redis"\nurls = ["redis://127.0.0.1:6379"]\nprefix = "sg"\n'
        'wait_replicas = "auto"\nwait_timeout = "1s"\n',
        "bad-duration": '[policy]\nidle_timeout = "30 fortnights"\n',
        "bad-server-limit": '[server]\nmax_connections = 0\nrequest_timeout = "1ms"\n',
        "throttle-in-profile": '[profiles.admin]\nthrottle_failures = 3\n',
        "unknown-key": 'colour = "blue"\n',
        "short-admin-token": 'admin_token = "short"\n',
        "admin-token-wrong-type": "admin_token = 12345678901234567890\n",
        "admin-token-multiline": 'admin_token = """0123456789abcdef\n0123456789abcdef"""\n',
        "unknown-profile": '[policy]\nprofile = "nope"\n',
        "bad-origin": 'public_origin = "http://a b"\n',
        "syntax-error": 'listen = "127.0.0.1:8080\n',
    }
    seeds = {k: b"\x01" + v.encode() for k, v in texts.items()}
    # Mode 0: the secret admin token line goes at the first NUL.
    seeds["secret-before-syntax-error"] = b"\x00\x00listen = \n"
    seeds["secret-in-policy-table"] = b"\x00[policy]\x00idle_timeout = \"1x\"\n"
    seeds["secret-duplicate"] = b'\x00admin_token = "x"\x00'
    return seeds


def main():
    for name, make in [
        ("token_parse", token_parse),
        ("cookie_header", cookie_header),
        ("jwt_verify", jwt_verify),
        ("config_toml", config_toml),
    ]:
        directory = ROOT / name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        for seed, data in make().items():
            (directory / f"seed-{seed}").write_bytes(data)


if __name__ == "__main__":
    main()
