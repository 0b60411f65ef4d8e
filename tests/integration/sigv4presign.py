"""An independent SigV4 presigner for `GET /mqtt` (IOT-FACTS "SigV4 presigned WebSocket URL"):
canonical request with hex(sha256("")) as payload hash, the session token appended
unsigned. Reproduces the captured vectors in /work/shared/vectors/aws-iot-wire.json."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import urllib.parse

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def amz_now(offset: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.timezone.utc) + offset).strftime("%Y%m%dT%H%M%SZ")


def presign_query(access_key_id: str, secret: str, region: str = "us-east-1",
                  amz_date: str | None = None, headers: dict | None = None,
                  service: str = "iotdevicegateway", token: str | None = None,
                  path: str = "/mqtt", expires: int | None = None,
                  algorithm: str = "AWS4-HMAC-SHA256") -> str:
    """The query string (without '?') of a presigned upgrade. `headers`: the signed headers
    with the values the request will carry (default {"host": "localhost"})."""
    amz_date = amz_date or amz_now()
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    hs = {k.lower(): v for k, v in (headers or {"host": "localhost"}).items()}
    signed = ";".join(sorted(hs))
    params = {"X-Amz-Algorithm": algorithm, "X-Amz-Credential": f"{access_key_id}/{scope}",
              "X-Amz-Date": amz_date, "X-Amz-SignedHeaders": signed}
    if expires is not None:  # the aws-sigv4 crate's presigning always adds it (signed)
        params["X-Amz-Expires"] = str(expires)
    canonical_query = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(params.items()))
    canonical_headers = "".join(f"{k}:{hs[k].strip()}\n" for k in sorted(hs))
    creq = "\n".join(["GET", path, canonical_query, canonical_headers, signed, EMPTY_SHA256])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    token_part = f"&X-Amz-Security-Token={q(token)}" if token else ""
    return f"{canonical_query}{token_part}&X-Amz-Signature={sig}"
