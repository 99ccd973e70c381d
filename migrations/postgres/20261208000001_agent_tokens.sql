-- Agent tokens: a site agent's token (role agent) is bound to one site, and makes that site's
-- agent calls only.
ALTER TABLE api_tokens ADD COLUMN site TEXT;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('viewer', 'operator', 'admin', 'agent'));
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_agent_site
    CHECK ((role = 'agent') = (site IS NOT NULL));
