// PostGraphile 5 as bench/api.py runs it: the Amber preset (PostGraphile's documented baseline for every
// production schema) over node-postgres, the `public` schema of APIBENCH_PG_URL, production settings:
// no GraphiQL, no watch mode, no explain. bench/peers/setup_postgraphile.sh copies this file next to
// node_modules (bench/.npm/postgraphile/) so that its imports resolve there; bench/api.py passes
// --host and --port on the command line. APIBENCH_PG_POOL sets node-postgres's pool size (its default is 10).
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

const connectionString = process.env.APIBENCH_PG_URL;
if (!connectionString) throw new Error("APIBENCH_PG_URL is not set");

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.APIBENCH_PG_POOL || 10) },
    }),
  ],
  grafserv: { graphiql: false, graphiqlOnGraphQLGET: false, watch: false, websockets: false },
  grafast: { explain: false },
};

export default preset;
