"""Authentication: the service's signing keys and access tokens, the token endpoint (OAuth 2.0
client credentials, SMART Backend Services style), secret and password hashing, tokens of an
external OpenID Connect provider, the people's console sessions.

Why by hand around a library: the token endpoint is a few rules of RFC 6749 §4.4 and RFC 7523
over FastAPI, and authlib's server framework targets Flask and Django; the JOSE work itself
(signing, verifying, keys, JWK sets) is joserfc's, the hashing argon2-cffi's.
"""
