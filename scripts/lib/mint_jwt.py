"""Mints HS256 JWTs shaped like Supabase Auth's, for the local stack's keys and demo tokens.

usage: mint_jwt.py SECRET ROLE [SUB EMAIL TENANT_ID TENANT_ROLE [platform_admin]]
TENANT_ID and TENANT_ROLE may be empty (a user of no tenant). `platform_admin` adds the
app_metadata claim that only the platform sets (Supabase Auth lets only the service role write
app_metadata). The anon and service keys last ten years, like `supabase start`'s; demo user
tokens are minted anew at every `up` and `env`, so they last one day.
"""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret: str, claims: dict) -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def main() -> None:
    secret, role = sys.argv[1], sys.argv[2]
    now = int(time.time())
    claims = {"iss": "supabase-demo", "role": role, "iat": now}
    if len(sys.argv) > 3:
        sub, email, tenant_id, tenant_role = sys.argv[3:7]
        app_metadata = {"provider": "email"}
        if tenant_id:
            app_metadata["tenant_id"] = tenant_id
        if tenant_role:
            app_metadata["role"] = tenant_role
        if "platform_admin" in sys.argv[7:]:
            app_metadata["platform_admin"] = True
        claims.update(
            {
                "sub": sub,
                "aud": "authenticated",
                "email": email,
                "app_metadata": app_metadata,
                "user_metadata": {},
                "exp": now + 24 * 3600,
            }
        )
    else:
        claims["exp"] = now + 10 * 365 * 24 * 3600
    print(mint(secret, claims))


if __name__ == "__main__":
    main()
