// What a schema dump does not recreate, listed so that the caller can tell the user: operators,
// casts, text search objects, foreign servers, publications, default privileges..., large objects
// and security labels.

import { FIRST_USER_OID, USER_NS } from './sql.ts'
import type { Dump } from './state.ts'

export async function inventory(dump: Dump): Promise<void> {
  const rows = await dump.q<{ what: string }>(
    `SELECT pg_describe_object(x.cls, x.oid, 0) AS what FROM (
       SELECT 'pg_operator'::regclass::oid AS cls, oid, oprnamespace AS nsp FROM pg_operator
       UNION ALL SELECT 'pg_opclass'::regclass::oid, oid, opcnamespace FROM pg_opclass
       UNION ALL SELECT 'pg_opfamily'::regclass::oid, oid, opfnamespace FROM pg_opfamily
       UNION ALL SELECT 'pg_cast'::regclass::oid, oid, NULL FROM pg_cast
       UNION ALL SELECT 'pg_ts_config'::regclass::oid, oid, cfgnamespace FROM pg_ts_config
       UNION ALL SELECT 'pg_ts_dict'::regclass::oid, oid, dictnamespace FROM pg_ts_dict
       UNION ALL SELECT 'pg_ts_parser'::regclass::oid, oid, prsnamespace FROM pg_ts_parser
       UNION ALL SELECT 'pg_ts_template'::regclass::oid, oid, tmplnamespace FROM pg_ts_template
       UNION ALL SELECT 'pg_conversion'::regclass::oid, oid, connamespace FROM pg_conversion
       UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass::oid, oid, NULL FROM pg_foreign_data_wrapper
       UNION ALL SELECT 'pg_foreign_server'::regclass::oid, oid, NULL FROM pg_foreign_server
       UNION ALL SELECT 'pg_user_mapping'::regclass::oid, oid, NULL FROM pg_user_mapping
       UNION ALL SELECT 'pg_event_trigger'::regclass::oid, oid, NULL FROM pg_event_trigger
       UNION ALL SELECT 'pg_publication'::regclass::oid, oid, NULL FROM pg_publication
       UNION ALL SELECT 'pg_subscription'::regclass::oid, oid, NULL FROM pg_subscription
         WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       UNION ALL SELECT 'pg_transform'::regclass::oid, oid, NULL FROM pg_transform
       UNION ALL SELECT 'pg_am'::regclass::oid, oid, NULL FROM pg_am
       UNION ALL SELECT 'pg_language'::regclass::oid, oid, NULL FROM pg_language
       UNION ALL SELECT 'pg_default_acl'::regclass::oid, oid, nullif(defaclnamespace, 0) FROM pg_default_acl
     ) x
     WHERE x.oid >= ${FIRST_USER_OID} AND (x.nsp IS NULL OR x.nsp IN ${USER_NS})
       AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = x.cls AND e.objid = x.oid AND e.deptype IN ('e', 'i'))
     ORDER BY 1`,
  )
  for (const r of rows) dump.skipped.push(`${r.what}: not recreated`)
  const [counts] = await dump.q<{ lo: string; labels: string }>(`SELECT (SELECT count(*) FROM pg_largeobject_metadata) AS lo, (SELECT count(*) FROM pg_seclabel) AS labels`, [])
  if (Number(counts!.lo)) dump.skipped.push(`${counts!.lo} large object(s): not copied`)
  if (Number(counts!.labels)) dump.skipped.push(`${counts!.labels} security label(s): not copied`)
}
