// Validates every object in the given YAML files against the Kubernetes or Istio schema of its
// apiVersion and kind (published schemas, bundled by kubernetes-models). Exits 1 on the first
// invalid or unknown object, naming file, kind and name.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";

async function model(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const candidates = group.endsWith("istio.io")
    ? [`@kubernetes-models/istio/${group}/${version}/${kind}`]
    : [group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`];
  for (const path of candidates) {
    try {
      return (await import(path))[kind];
    } catch {}
  }
  return undefined;
}

let count = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc) continue;
    const where = `${file}: ${doc.kind} ${doc.metadata?.namespace ?? ""}/${doc.metadata?.name ?? "?"}`;
    const Model = await model(doc.apiVersion ?? "", doc.kind ?? "");
    if (!Model) {
      console.error(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      process.exit(1);
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      process.exit(1);
    }
    count += 1;
  }
}
console.log(`${count} objects valid`);
