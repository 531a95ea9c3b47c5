BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('202611231930');
CREATE TABLE alerts (
	id VARCHAR(40) NOT NULL, 
	created_at DATETIME NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	severity VARCHAR(10) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	user_id VARCHAR(40), 
	session_id VARCHAR(40), 
	ip VARCHAR(45) NOT NULL, 
	details JSON NOT NULL, 
	acknowledged_at DATETIME, 
	acknowledged_by VARCHAR(40), 
	resolved_at DATETIME, 
	resolved_by VARCHAR(40), 
	dedupe_key VARCHAR(120), 
	tenant_id VARCHAR(40) NOT NULL, 
	CONSTRAINT pk_alerts PRIMARY KEY (id), 
	CONSTRAINT fk_alerts_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT uq_alerts_dedupe_key UNIQUE (dedupe_key)
);
INSERT INTO "alerts" VALUES('alr_iTPXS4aL8iWnej6Lob6AFw','2026-03-02 09:00:00.000000','new_device','low','open','usr_4Fq-YTIcxiu37sXzVYi8zA','sess_CTGBFpja8Yzs_y7Vm4JsQg','203.0.113.9','{"summary": "Signed in on Firefox on Linux (desktop) from 203.0.113.9.", "device_id": "dev_uVgiJHxBK7ksMO8HwZAjfw"}',NULL,NULL,NULL,NULL,NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw');
CREATE TABLE audit_heads (
	chain VARCHAR(40) NOT NULL, 
	last_hash VARCHAR(64) NOT NULL, 
	anchor_hash VARCHAR(64) NOT NULL, 
	pseudonym_key VARCHAR(64) NOT NULL, 
	sealed INTEGER NOT NULL, 
	purged INTEGER NOT NULL, 
	CONSTRAINT pk_audit_heads PRIMARY KEY (chain)
);
INSERT INTO "audit_heads" VALUES('ten_N6wY2nsbQNY3pIahu6x0Lw','518da8a53266cc8be4ef1d2bcc42db66c546526a9424e42c43e130682b3422f7','0000000000000000000000000000000000000000000000000000000000000000','5bd07be69bf29f9fcf6ed2525a4919d3cf1de87386a5753212d882c840820ed8',10,0);
CREATE TABLE challenges (
	id VARCHAR(40) NOT NULL, 
	tenant_id VARCHAR(40), 
	user_id VARCHAR(40), 
	email VARCHAR(320) NOT NULL, 
	code_hash VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	attempts INTEGER NOT NULL, 
	consumed_at DATETIME, 
	ip VARCHAR(45) NOT NULL, 
	CONSTRAINT pk_challenges PRIMARY KEY (id), 
	CONSTRAINT fk_challenges_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT fk_challenges_user_id_users FOREIGN KEY(user_id) REFERENCES users (id)
);
INSERT INTO "challenges" VALUES('chl_VI6hsD4YF7470D_vWfLhqw','ten_N6wY2nsbQNY3pIahu6x0Lw','usr_4Fq-YTIcxiu37sXzVYi8zA','sam@acme.test','d5694ae08778f36b24f4e0d4983783237240ae1ea2cace6c144359826372c7ae','2026-03-02 09:00:00.000000','2026-03-02 09:10:00.000000',0,'2026-03-02 09:00:00.000000','203.0.113.9');
INSERT INTO "challenges" VALUES('chl_eRBCmkn9flP8nNQDqrIhIQ','ten_N6wY2nsbQNY3pIahu6x0Lw','usr_4Fq-YTIcxiu37sXzVYi8zA','sam@acme.test','936e1b6a69d8e8ee104979d1a6e485d4eede5b28fa088f6ed3bc9f20ebc565af','2026-03-02 09:00:00.000000','2026-03-02 09:10:00.000000',0,'2026-03-02 09:00:00.000000','203.0.113.9');
INSERT INTO "challenges" VALUES('chl_4voEcd_-s7SIEfU2HH2SDA','ten_N6wY2nsbQNY3pIahu6x0Lw','usr_2pFHWYcCRntn2k9bTashng','boss@acme.test','da1f64ca6bac16265a55b500c1cc0f0399ba2cab1ae1413d3e9e83c84014d8a3','2026-03-02 09:00:00.000000','2026-03-02 09:10:00.000000',0,NULL,'203.0.113.9');
CREATE TABLE devices (
	id VARCHAR(40) NOT NULL, 
	user_id VARCHAR(40) NOT NULL, 
	cookie_hash VARCHAR(64) NOT NULL, 
	name VARCHAR(100), 
	kind VARCHAR(20) NOT NULL, 
	os VARCHAR(100) NOT NULL, 
	browser VARCHAR(100) NOT NULL, 
	first_seen_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	trusted_until DATETIME, 
	tenant_id VARCHAR(40) NOT NULL, 
	CONSTRAINT pk_devices PRIMARY KEY (id), 
	CONSTRAINT fk_devices_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT fk_devices_user_id_users FOREIGN KEY(user_id) REFERENCES users (id), 
	CONSTRAINT uq_devices_user_cookie UNIQUE (user_id, cookie_hash)
);
INSERT INTO "devices" VALUES('dev_tHzLpw8fU7ha4gVl2SI2iQ','usr_4Fq-YTIcxiu37sXzVYi8zA','47a29c5a0f2c7d42fd25f226001935bab9bd9348f0cdb0309fdcf98b46f445d6',NULL,'desktop','Linux','Firefox','2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000',NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw');
INSERT INTO "devices" VALUES('dev_uVgiJHxBK7ksMO8HwZAjfw','usr_4Fq-YTIcxiu37sXzVYi8zA','348dbb9f274b0494995bd6b675f490b5d36c931d9651e88ed2734ec4e66c848a',NULL,'desktop','Linux','Firefox','2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000','2026-04-01 09:00:00.000000','ten_N6wY2nsbQNY3pIahu6x0Lw');
CREATE TABLE events (
	id INTEGER NOT NULL, 
	tenant_id VARCHAR(40), 
	at DATETIME NOT NULL, 
	kind VARCHAR(50) NOT NULL, 
	actor_id VARCHAR(40), 
	subject_id VARCHAR(40), 
	session_id VARCHAR(40), 
	ip VARCHAR(45) NOT NULL, 
	details JSON NOT NULL, seq INTEGER, prev_hash VARCHAR(64), hash VARCHAR(64), 
	CONSTRAINT pk_events PRIMARY KEY (id), 
	CONSTRAINT fk_events_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id)
);
INSERT INTO "events" VALUES(1,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','tenant.created',NULL,NULL,NULL,'','{"slug": "acme", "name": "Acme"}',1,'0000000000000000000000000000000000000000000000000000000000000000','8989fa2cf63f66bcdd35fb8488823a7bbc08fd398c8c0a4883cede9899b343f9');
INSERT INTO "events" VALUES(2,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','user.created',NULL,'usr_2pFHWYcCRntn2k9bTashng',NULL,'','{"email": "boss@acme.test", "role": "admin"}',2,'8989fa2cf63f66bcdd35fb8488823a7bbc08fd398c8c0a4883cede9899b343f9','d7942199b005eec703adfc1d6efeaeeafdba31f02b4ff0254ea967033b223a3b');
INSERT INTO "events" VALUES(3,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','user.created',NULL,'usr_4Fq-YTIcxiu37sXzVYi8zA',NULL,'','{"email": "sam@acme.test", "role": "member"}',3,'d7942199b005eec703adfc1d6efeaeeafdba31f02b4ff0254ea967033b223a3b','a41e2ed34143f7a3f457eb07c6941a3a45513d41da9e00997b12cf7f2de9d712');
INSERT INTO "events" VALUES(4,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','code.requested',NULL,'usr_4Fq-YTIcxiu37sXzVYi8zA',NULL,'203.0.113.9','{"challenge_id": "chl_VI6hsD4YF7470D_vWfLhqw", "known": true}',4,'a41e2ed34143f7a3f457eb07c6941a3a45513d41da9e00997b12cf7f2de9d712','1e3a0129f12b6dcc7dabec2180d6f5bb365eb100e6aee0da6d808ca94ae62f44');
INSERT INTO "events" VALUES(5,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','session.created','usr_4Fq-YTIcxiu37sXzVYi8zA','usr_4Fq-YTIcxiu37sXzVYi8zA','sess_XNNyRSZ-LkmF10YUs9uWPw','203.0.113.9','{"device_id": "dev_tHzLpw8fU7ha4gVl2SI2iQ", "expires_at": "2026-03-02T21:00:00+00:00"}',5,'1e3a0129f12b6dcc7dabec2180d6f5bb365eb100e6aee0da6d808ca94ae62f44','89ae8d44cbb87a601e78d6c60afb8076751c8a0bd4e9afe2a19527cf4af89fc4');
INSERT INTO "events" VALUES(6,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','code.requested',NULL,'usr_4Fq-YTIcxiu37sXzVYi8zA',NULL,'203.0.113.9','{"challenge_id": "chl_eRBCmkn9flP8nNQDqrIhIQ", "known": true}',6,'89ae8d44cbb87a601e78d6c60afb8076751c8a0bd4e9afe2a19527cf4af89fc4','ed6efd4cc78b50d83d6a44ee48d37c4ebea4f68f3fe65bad157e93deb63f12e2');
INSERT INTO "events" VALUES(7,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','device.trusted','usr_4Fq-YTIcxiu37sXzVYi8zA','usr_4Fq-YTIcxiu37sXzVYi8zA',NULL,'203.0.113.9','{"device_id": "dev_uVgiJHxBK7ksMO8HwZAjfw", "until": "2026-04-01T09:00:00+00:00"}',7,'ed6efd4cc78b50d83d6a44ee48d37c4ebea4f68f3fe65bad157e93deb63f12e2','fcc66873a63563c37397918b080759b091964dd0d0fac48338eda5a6e8f0099f');
INSERT INTO "events" VALUES(8,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','session.created','usr_4Fq-YTIcxiu37sXzVYi8zA','usr_4Fq-YTIcxiu37sXzVYi8zA','sess_CTGBFpja8Yzs_y7Vm4JsQg','203.0.113.9','{"device_id": "dev_uVgiJHxBK7ksMO8HwZAjfw", "expires_at": "2026-04-01T09:00:00+00:00"}',8,'fcc66873a63563c37397918b080759b091964dd0d0fac48338eda5a6e8f0099f','ef1f027658a42b0ca07bcf6876dc9c3675f49421cd1f49e527ee6745c2dd32a9');
INSERT INTO "events" VALUES(9,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','alert.raised',NULL,'usr_4Fq-YTIcxiu37sXzVYi8zA','sess_CTGBFpja8Yzs_y7Vm4JsQg','203.0.113.9','{"alert_id": "alr_iTPXS4aL8iWnej6Lob6AFw", "alert_kind": "new_device", "severity": "low", "summary": "Signed in on Firefox on Linux (desktop) from 203.0.113.9."}',9,'ef1f027658a42b0ca07bcf6876dc9c3675f49421cd1f49e527ee6745c2dd32a9','eb3c68747731a69be48c646f9b5b940eb1fd13c00a2d3515ea136d17c5ebb1e6');
INSERT INTO "events" VALUES(10,'ten_N6wY2nsbQNY3pIahu6x0Lw','2026-03-02 09:00:00.000000','code.requested',NULL,'usr_2pFHWYcCRntn2k9bTashng',NULL,'203.0.113.9','{"challenge_id": "chl_4voEcd_-s7SIEfU2HH2SDA", "known": true}',10,'eb3c68747731a69be48c646f9b5b940eb1fd13c00a2d3515ea136d17c5ebb1e6','518da8a53266cc8be4ef1d2bcc42db66c546526a9424e42c43e130682b3422f7');
CREATE TABLE not_me_tokens (
	id VARCHAR(40) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	user_id VARCHAR(40) NOT NULL, 
	session_id VARCHAR(40) NOT NULL, 
	device_id VARCHAR(40) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	used_at DATETIME, 
	tenant_id VARCHAR(40) NOT NULL, 
	CONSTRAINT pk_not_me_tokens PRIMARY KEY (id), 
	CONSTRAINT fk_not_me_tokens_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT fk_not_me_tokens_user_id_users FOREIGN KEY(user_id) REFERENCES users (id), 
	CONSTRAINT uq_not_me_tokens_token_hash UNIQUE (token_hash)
);
INSERT INTO "not_me_tokens" VALUES('nmt_LvAMVF_kihq4EXZ_cpKDKg','392001148e4cd92d8094f1ce3dbbcd39291dfd8c644b268dfe74b52759d6910c','usr_4Fq-YTIcxiu37sXzVYi8zA','sess_CTGBFpja8Yzs_y7Vm4JsQg','dev_uVgiJHxBK7ksMO8HwZAjfw','2026-03-02 09:00:00.000000','2026-03-09 09:00:00.000000',NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw');
CREATE TABLE sessions (
	id VARCHAR(40) NOT NULL, 
	user_id VARCHAR(40) NOT NULL, 
	device_id VARCHAR(40) NOT NULL, 
	created_at DATETIME NOT NULL, 
	authenticated_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	idle_deadline DATETIME NOT NULL, 
	absolute_deadline DATETIME NOT NULL, 
	extend_on_activity BOOLEAN NOT NULL, 
	ip VARCHAR(45) NOT NULL, 
	user_agent VARCHAR(512) NOT NULL, 
	location VARCHAR(200), 
	ended_at DATETIME, 
	end_reason VARCHAR(30), 
	tenant_id VARCHAR(40) NOT NULL, token_refused_at DATETIME, 
	CONSTRAINT pk_sessions PRIMARY KEY (id), 
	CONSTRAINT fk_sessions_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id), 
	CONSTRAINT fk_sessions_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT fk_sessions_user_id_users FOREIGN KEY(user_id) REFERENCES users (id)
);
INSERT INTO "sessions" VALUES('sess_XNNyRSZ-LkmF10YUs9uWPw','usr_4Fq-YTIcxiu37sXzVYi8zA','dev_tHzLpw8fU7ha4gVl2SI2iQ','2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000','2026-03-02 09:30:00.000000','2026-03-02 21:00:00.000000',1,'203.0.113.9','Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0',NULL,NULL,NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw',NULL);
INSERT INTO "sessions" VALUES('sess_CTGBFpja8Yzs_y7Vm4JsQg','usr_4Fq-YTIcxiu37sXzVYi8zA','dev_uVgiJHxBK7ksMO8HwZAjfw','2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000','2026-03-02 09:30:00.000000','2026-04-01 09:00:00.000000',1,'203.0.113.9','Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0',NULL,NULL,NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw',NULL);
CREATE TABLE signing_keys (
	kid VARCHAR(40) NOT NULL, 
	alg VARCHAR(10) NOT NULL, 
	public_pem TEXT NOT NULL, 
	private_encrypted BLOB NOT NULL, 
	created_at DATETIME NOT NULL, 
	retired_at DATETIME, 
	verify_until DATETIME, 
	CONSTRAINT pk_signing_keys PRIMARY KEY (kid)
);
INSERT INTO "signing_keys" VALUES('aDFFcbFuHhCNajvL','ES256','-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAESBhZV+TyyIYKRB5IXKHBLiDLmzDM
M2H5MAhsPDKMeAxuVbOMgo/AvgXS2kLyNITDMfCRj35dN7OkJwoVOuYkAA==
-----END PUBLIC KEY-----
',X'8C9E53494EC5D4903611428775B9B4FC0BB612977C63A2BDC979D9569A440C97E54B79D3FE998C4BF5AD6FA322C2A56761B46CA78FEFEE2B03FA44BF10ABBEFBEBF4FFB300D35A6442353E048B1E53974749849B00BD2FE8F4B6F69E3F3ADA15E1107751A271AAF3F64660D51F43A4F4B478F7C9CACB5DA55606C37A8A33029087745242D2268C0CE230883CCB75D7439B1F90F856F8D6FCE145B2B0C76EFD2B9B4151EDA42ED74217C026275F8A77133801456A83665075E38522D43EAE853EA867A8D3A6E757CAB641E402AC3320395FE6D9E1A7100BBC77D90816A7E2DEE70FA140278A867C78ACBDCE7F7B01C5EF16EA84045BA280FD2904BCA3FEB8B41C78EC995AA1A04C5B323851C83A','2026-03-02 09:00:00.000000',NULL,NULL);
CREATE TABLE "tenants" (
	id VARCHAR(40) NOT NULL, 
	slug VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	created_at DATETIME NOT NULL, 
	idle_timeout INTEGER NOT NULL, 
	absolute_lifetime INTEGER NOT NULL, 
	extend_on_activity BOOLEAN NOT NULL, 
	trusted_lifetime INTEGER NOT NULL, 
	trusted_outlives_absolute BOOLEAN NOT NULL, 
	max_sessions_per_user INTEGER NOT NULL, 
	limit_mode VARCHAR(20) NOT NULL, 
	notify_new_device BOOLEAN NOT NULL, 
	ip_change VARCHAR(10) DEFAULT 'allow' NOT NULL, 
	ua_change VARCHAR(10) DEFAULT 'allow' NOT NULL, 
	require_totp_for_admins BOOLEAN DEFAULT 0 NOT NULL, 
	notify_high_alerts BOOLEAN DEFAULT 1 NOT NULL, sessions_retention_days INTEGER DEFAULT 90 NOT NULL, events_retention_days INTEGER DEFAULT 365 NOT NULL, ip_anonymise_days INTEGER DEFAULT 30 NOT NULL, 
	CONSTRAINT pk_tenants PRIMARY KEY (id), 
	CONSTRAINT uq_tenants_slug UNIQUE (slug)
);
INSERT INTO "tenants" VALUES('ten_N6wY2nsbQNY3pIahu6x0Lw','acme','Acme','2026-03-02 09:00:00.000000',1800,43200,1,2592000,1,10,'evict_oldest',1,'allow','allow',0,1,90,365,30);
CREATE TABLE "users" (
	id VARCHAR(40) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	name VARCHAR(200), 
	role VARCHAR(20) NOT NULL, 
	disabled BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	last_sign_in_at DATETIME, 
	tenant_id VARCHAR(40) NOT NULL, 
	totp_secret BLOB, 
	totp_enabled_at DATETIME, 
	totp_last_step INTEGER, 
	failed_codes INTEGER DEFAULT 0 NOT NULL, 
	code_sign_in_after DATETIME, 
	CONSTRAINT pk_users PRIMARY KEY (id), 
	CONSTRAINT fk_users_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id), 
	CONSTRAINT uq_users_email UNIQUE (email)
);
INSERT INTO "users" VALUES('usr_2pFHWYcCRntn2k9bTashng','boss@acme.test',NULL,'admin',0,'2026-03-02 09:00:00.000000',NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw',X'1CCD5257503BD4907403C0979BD6C943340E57A4C9FBF95D222B7F27FEFFCEF72EDB1B712668342183A7545824E7ACB8573697C94CDA559A731B0C61','2026-03-02 09:00:00.000000',NULL,0,NULL);
INSERT INTO "users" VALUES('usr_4Fq-YTIcxiu37sXzVYi8zA','sam@acme.test',NULL,'member',0,'2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000','ten_N6wY2nsbQNY3pIahu6x0Lw',NULL,NULL,NULL,0,NULL);
CREATE TABLE webhook_deliveries (
	id VARCHAR(40) NOT NULL, 
	endpoint_id VARCHAR(40) NOT NULL, 
	event_id INTEGER NOT NULL, 
	kind VARCHAR(50) NOT NULL, 
	body TEXT NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	attempts INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_attempt_at DATETIME, 
	delivered_at DATETIME, 
	response_status INTEGER, 
	last_error VARCHAR(300), 
	tenant_id VARCHAR(40) NOT NULL, 
	CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id), 
	CONSTRAINT fk_webhook_deliveries_endpoint_id_webhook_endpoints FOREIGN KEY(endpoint_id) REFERENCES webhook_endpoints (id), 
	CONSTRAINT fk_webhook_deliveries_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id)
);
INSERT INTO "webhook_deliveries" VALUES('whd_SmyG7o3H5nBWJk_YTkuA3w','whk_I6OjtAV_oSP2L1zi2cFdIQ',5,'session.created','{"id":"evt_89ae8d44cbb87a601e78d6c60afb8076","type":"session.created","createdAt":"2026-03-02T09:00:00Z","tenantId":"ten_N6wY2nsbQNY3pIahu6x0Lw","data":{"deviceId":"dev_tHzLpw8fU7ha4gVl2SI2iQ","expiresAt":"2026-03-02T21:00:00+00:00","actorId":"usr_4Fq-YTIcxiu37sXzVYi8zA","subjectId":"usr_4Fq-YTIcxiu37sXzVYi8zA","sessionId":"sess_XNNyRSZ-LkmF10YUs9uWPw","ip":"203.0.113.9"}}','pending',0,'2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000',NULL,NULL,NULL,NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw');
INSERT INTO "webhook_deliveries" VALUES('whd_QzfsrSaNReI2ra0uU5An-w','whk_I6OjtAV_oSP2L1zi2cFdIQ',8,'session.created','{"id":"evt_ef1f027658a42b0ca07bcf6876dc9c36","type":"session.created","createdAt":"2026-03-02T09:00:00Z","tenantId":"ten_N6wY2nsbQNY3pIahu6x0Lw","data":{"deviceId":"dev_uVgiJHxBK7ksMO8HwZAjfw","expiresAt":"2026-04-01T09:00:00+00:00","actorId":"usr_4Fq-YTIcxiu37sXzVYi8zA","subjectId":"usr_4Fq-YTIcxiu37sXzVYi8zA","sessionId":"sess_CTGBFpja8Yzs_y7Vm4JsQg","ip":"203.0.113.9"}}','pending',0,'2026-03-02 09:00:00.000000','2026-03-02 09:00:00.000000',NULL,NULL,NULL,NULL,'ten_N6wY2nsbQNY3pIahu6x0Lw');
CREATE TABLE webhook_endpoints (
	id VARCHAR(40) NOT NULL, 
	url VARCHAR(2000) NOT NULL, 
	kinds JSON NOT NULL, 
	secret_encrypted BLOB NOT NULL, 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(40), 
	tenant_id VARCHAR(40) NOT NULL, 
	CONSTRAINT pk_webhook_endpoints PRIMARY KEY (id), 
	CONSTRAINT fk_webhook_endpoints_tenant_id_tenants FOREIGN KEY(tenant_id) REFERENCES tenants (id)
);
INSERT INTO "webhook_endpoints" VALUES('whk_I6OjtAV_oSP2L1zi2cFdIQ','https://hooks.example.com/holdfast','["session.created"]',X'D2DBED936232E6BC8FEF0D1458022E32E148B465CA63014588F8391E5F709162452DD74B1228D8AA50A10E5A64BFEF192010823E05154462AD9F3B49F205F57A74E3','2026-03-02 09:00:00.000000','usr_2pFHWYcCRntn2k9bTashng','ten_N6wY2nsbQNY3pIahu6x0Lw');
CREATE INDEX ix_events_kind ON events (kind);
CREATE INDEX ix_events_subject_id ON events (subject_id);
CREATE INDEX ix_events_tenant_id_id ON events (tenant_id, id);
CREATE INDEX ix_challenges_email ON challenges (email);
CREATE INDEX ix_challenges_user_id ON challenges (user_id);
CREATE INDEX ix_devices_tenant_id ON devices (tenant_id);
CREATE INDEX ix_devices_user_id ON devices (user_id);
CREATE INDEX ix_sessions_device_id ON sessions (device_id);
CREATE INDEX ix_sessions_tenant_created ON sessions (tenant_id, created_at);
CREATE INDEX ix_sessions_tenant_id ON sessions (tenant_id);
CREATE INDEX ix_sessions_tenant_last_seen ON sessions (tenant_id, last_seen_at);
CREATE INDEX ix_sessions_user_live ON sessions (user_id, ended_at);
CREATE INDEX ix_alerts_tenant_created ON alerts (tenant_id, created_at, id);
CREATE INDEX ix_alerts_tenant_id ON alerts (tenant_id);
CREATE INDEX ix_alerts_tenant_status ON alerts (tenant_id, status, created_at);
CREATE INDEX ix_alerts_user_id ON alerts (user_id);
CREATE INDEX ix_not_me_tokens_tenant_id ON not_me_tokens (tenant_id);
CREATE INDEX ix_not_me_tokens_user_id ON not_me_tokens (user_id);
CREATE INDEX ix_users_tenant_id ON users (tenant_id);
CREATE UNIQUE INDEX ix_events_tenant_seq ON events (tenant_id, seq);
CREATE INDEX ix_events_actor_id ON events (actor_id);
CREATE INDEX ix_webhook_endpoints_tenant_id ON webhook_endpoints (tenant_id);
CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX ix_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX ix_webhook_deliveries_event_id ON webhook_deliveries (event_id);
CREATE INDEX ix_webhook_deliveries_tenant_id ON webhook_deliveries (tenant_id);
CREATE INDEX ix_events_tenant_kind_at ON events (tenant_id, kind, at);
CREATE INDEX ix_sessions_ended ON sessions (tenant_id, ended_at, created_at) WHERE ended_at IS NOT NULL;
CREATE INDEX ix_sessions_live ON sessions (tenant_id, idle_deadline, absolute_deadline, last_seen_at, created_at, user_id, device_id, id) WHERE ended_at IS NULL;
CREATE INDEX ix_users_session_facts ON users (id, email, role, disabled);
CREATE INDEX ix_tenants_session_policy ON tenants (id, idle_timeout, absolute_lifetime, extend_on_activity, trusted_lifetime, trusted_outlives_absolute, ip_change, ua_change);
CREATE INDEX ix_devices_session_facts ON devices (id, trusted_until);
COMMIT;
