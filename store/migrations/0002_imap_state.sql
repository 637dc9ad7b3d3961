-- SPDX-License-Identifier: MIT
-- 0002_imap_state.sql - where each IMAP mailbox was read up to, so that a
-- message left in the folder (moving disabled or failed) is not fetched again.
-- mailbox: "imaps://user@host:port/Folder" (never a password). last_uid: every
-- message with a UID up to it had its reports committed (or its refusal
-- recorded). A new UIDVALIDITY makes every UID meaningless: last_uid restarts.
CREATE TABLE imap_state (
    mailbox     text PRIMARY KEY,
    uidvalidity bigint NOT NULL,
    last_uid    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
