DROP TABLE presence;
DROP TABLE instances;
