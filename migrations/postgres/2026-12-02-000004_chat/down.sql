DROP TABLE chat_deliveries;
DROP TABLE chat_messages;
DROP TABLE contacts;
DROP TABLE profiles;
