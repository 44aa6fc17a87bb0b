DROP TABLE group_invites;
DROP TABLE group_envelopes;
DROP TABLE group_members;
DROP TABLE groups;
