-- Bearer tokens of the read API. Only the sha256 of each secret is stored: the secret is printed
-- once by `prescore tokens create` and cannot be recovered. While any token is unrevoked, every
-- /v1 request must carry one; `jobs` scopes a token to some jobs (NULL: every job).
CREATE TABLE prescore.api_tokens (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text,
  sha256      text        NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  jobs        text[]      CHECK (jobs IS NULL OR cardinality(jobs) > 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
