-- Sign-ins that can be revoked: one row per login (or registration) on a
-- device, the `sid` of its access tokens, with a family of rotating refresh
-- tokens. Refresh tokens are stored as SHA-256 hashes (they are 256 random
-- bits: a slow hash adds nothing); a spent one is kept so that its reuse is
-- recognized and revokes the whole family.
create table auth_sessions (
    id             uuid primary key,
    user_id        uuid not null references users (id) on delete cascade,
    -- the User-Agent of the sign-in, for a list of devices; may be absent
    device         text,
    created_at     timestamptz not null default now(),
    last_used_at   timestamptz not null default now(),
    -- the current refresh token's expiry; each refresh moves it
    expires_at     timestamptz not null,
    revoked_at     timestamptz,
    revoked_reason text,
    constraint auth_sessions_revoked_reason_known
        check (revoked_reason in ('logout', 'logout_all', 'password_changed', 'refresh_token_reused')),
    constraint auth_sessions_revoked_with_reason check ((revoked_at is null) = (revoked_reason is null))
);

create index auth_sessions_user_id_idx on auth_sessions (user_id);

create table refresh_tokens (
    hash       bytea primary key,
    session_id uuid not null references auth_sessions (id) on delete cascade,
    created_at timestamptz not null default now(),
    -- set when the token was exchanged for a new one; presenting it again is reuse
    spent_at   timestamptz
);

create index refresh_tokens_session_id_idx on refresh_tokens (session_id);
