BEGIN TRANSACTION;
CREATE TABLE "catalog" (
   "id" TEXT PRIMARY KEY,
   "url" TEXT,
   "sha256" TEXT,
   "filename" TEXT,
   "origin" TEXT,
   "added_at" REAL
);
INSERT INTO "catalog" VALUES('film-42','http://127.0.0.1:9/film.mkv','cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd','film.mkv','cli',1.79590246078802323343e+09);
CREATE TABLE [dav_locks] (key text primary key, value blob not null);
INSERT INTO "dav_locks" VALUES('URL2TOKEN:/alice/downloads/a.bin',X'80049518000000000000005D948C116F70617175656C6F636B746F6B656E3A3194612E');
CREATE TABLE [dav_properties] (key text primary key, value blob not null);
INSERT INTO "dav_properties" VALUES('/alice/downloads/a.bin',X'80049523000000000000007D948C0D7B4441563A7D636F6D6D656E7494430C3C783E68656C6C6F3C2F783E94732E');
CREATE TABLE "deliveries" (
   "id" INTEGER PRIMARY KEY,
   "user" TEXT NOT NULL,
   "device" TEXT NOT NULL,
   "path" TEXT NOT NULL,
   "created_at" REAL,
   "delivered_at" REAL
);
INSERT INTO "deliveries" VALUES(1,'alice','laptop','downloads/a.bin',1.7959024608026239872e+09,NULL);
CREATE TABLE "devices" (
   "user" TEXT NOT NULL,
   "name" TEXT NOT NULL,
   "created_at" REAL,
   "last_seen" REAL,
   PRIMARY KEY ("user", "name")
);
INSERT INTO "devices" VALUES('alice','laptop',1.79590246080166244507e+09,1.79590246080166244507e+09);
CREATE TABLE "event_users" (
   "user" TEXT PRIMARY KEY,
   "last_seq" INTEGER,
   "floor" INTEGER
);
INSERT INTO "event_users" VALUES('alice',1,0);
INSERT INTO "event_users" VALUES('bob',1,0);
CREATE TABLE "events" (
   "user" TEXT NOT NULL,
   "seq" INTEGER NOT NULL,
   "kind" TEXT NOT NULL,
   "data" TEXT NOT NULL,
   "created_at" REAL,
   PRIMARY KEY ("user", "seq")
);
INSERT INTO "events" VALUES('alice',1,'device.send','{"device": "laptop", "delivery": 1, "path": "downloads/a.bin"}',1795902460.80321);
INSERT INTO "events" VALUES('bob',1,'file.created','{"path": "downloads/x"}',1.79590246080335164072e+09);
CREATE TABLE "shares" (
   "id" TEXT PRIMARY KEY,
   "owner" TEXT NOT NULL,
   "path" TEXT NOT NULL,
   "token_sha256" TEXT NOT NULL,
   "password_hash" TEXT,
   "created_at" REAL NOT NULL,
   "expires_at" REAL
);
INSERT INTO "shares" VALUES('kosT7hdIXR0a3koTS3pMKA','alice','downloads/a.bin','e37d621b7d9b4103a6eb497f747959e39337268e0e2d76435b313f0cbc7b4f59',NULL,1.795902460803407669e+09,NULL);
CREATE TABLE "tasks" (
   "id" INTEGER PRIMARY KEY,
   "user" TEXT NOT NULL,
   "source" TEXT NOT NULL,
   "kind" TEXT NOT NULL,
   "folder" TEXT NOT NULL,
   "trigger_path" TEXT,
   "state" TEXT NOT NULL,
   "display_name" TEXT NOT NULL,
   "sha256_expected" TEXT,
   "filename_hint" TEXT,
   "bytes_done" INTEGER,
   "bytes_total" INTEGER,
   "etag" TEXT,
   "last_modified" TEXT,
   "final_url" TEXT,
   "temp_path" TEXT,
   "attempts" INTEGER,
   "next_attempt_at" REAL,
   "first_failure_at" REAL,
   "error" TEXT,
   "path" TEXT,
   "sha256" TEXT,
   "instant" INTEGER,
   "segments" TEXT,
   "created_at" REAL,
   "updated_at" REAL,
   "finished_at" REAL,
   "fetched_url" TEXT,
   "superseded_by" INTEGER,
   "origin_headers" TEXT
, "send_to" TEXT);
INSERT INTO "tasks" VALUES(1,'alice','http://127.0.0.1:9/a.bin','url','downloads','downloads/a.url','done','a.bin',NULL,NULL,10,10,NULL,NULL,NULL,NULL,0,NULL,NULL,NULL,'downloads/a.bin','abababababababababababababababababababababababababababababababab',0,NULL,1.79590246073731470109e+09,1.79590246075861096385e+09,1.7959024607585918903e+09,'http://127.0.0.1:9/a.bin',NULL,NULL,NULL);
INSERT INTO "tasks" VALUES(2,'alice','http://127.0.0.1:9/b.bin','url','downloads','downloads/b.url','failed','b.bin',NULL,NULL,0,NULL,NULL,NULL,NULL,NULL,3,NULL,NULL,'the origin answered 404 Not Found',NULL,NULL,0,NULL,1.79590246077246928216e+09,1.79590246077406096459e+09,1.79590246077405548091e+09,NULL,NULL,NULL,'laptop');
INSERT INTO "tasks" VALUES(3,'bob','film-42','id','downloads/films','downloads/films/film.id','waiting','film.mkv','cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd',NULL,5,NULL,NULL,NULL,NULL,NULL,1,1.79590606078498339647e+09,NULL,NULL,NULL,NULL,0,'[[0,10,5]]',1.79590246077448630326e+09,1.79590246078499031065e+09,NULL,NULL,NULL,NULL,NULL);
INSERT INTO "tasks" VALUES(4,'bob','http://127.0.0.1:9/c.bin','url','downloads',NULL,'queued','c.bin',NULL,NULL,0,NULL,NULL,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,NULL,0,NULL,1.7959024607853136062e+09,1.7959024607853136062e+09,NULL,NULL,NULL,'[["Cookie","s=1"]]',NULL);
CREATE TABLE "users" (
   "name" TEXT PRIMARY KEY,
   "password_hash" TEXT NOT NULL,
   "quota_bytes" INTEGER,
   "used_bytes" INTEGER NOT NULL DEFAULT 0,
   "created_at" REAL
);
INSERT INTO "users" VALUES('alice','scrypt$16384$8$1$LGVhnqJxLT4qGPr2YPW24g==$zYKDLd5jmN6tKms8+TIPcd3kx3rup3GJmJd3jyh8dKEPWSHfuCGHSTPU6gnq446+3dGhA+cuT7TRTVqmD60JqQ==',10000000,1234,1.79590246042583370211e+09);
INSERT INTO "users" VALUES('bob','scrypt$16384$8$1$tw2hZB+Ro+JEsWs3cEp+3g==$kKR+ZqHN6cLt+JfssRqVG7TiajYDPtj2IAnBBJqC3rZpucMKdAu0P1O25ccVbgsGkM153j4BRrziylHKNdJ8Zw==',NULL,0,1.79590246072144532206e+09);
CREATE INDEX "idx_tasks_user_state"
    ON "tasks" ("user", "state");
CREATE INDEX "idx_tasks_state_next_attempt_at"
    ON "tasks" ("state", "next_attempt_at");
CREATE INDEX "idx_tasks_user_trigger_path"
    ON "tasks" ("user", "trigger_path");
CREATE INDEX "idx_tasks_user_id"
    ON "tasks" ("user", "id");
CREATE INDEX "idx_deliveries_user_device_delivered_at"
    ON "deliveries" ("user", "device", "delivered_at");
CREATE UNIQUE INDEX "idx_shares_token_sha256"
    ON "shares" ("token_sha256");
CREATE INDEX "idx_shares_owner"
    ON "shares" ("owner");
COMMIT;
