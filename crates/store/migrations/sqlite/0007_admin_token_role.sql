-- Admin API tokens carry a role: "admin" (everything, as before) or "helpdesk" (no policy).
ALTER TABLE admin_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
