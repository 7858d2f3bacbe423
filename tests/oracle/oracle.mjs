// CIDs from an independent implementation, ipfs-unixfs-importer, for the test suite.
// Usage: node oracle.mjs <default|unixfs-v0-2015> <chunk size or 0> <path>...
// Prints one root CID per path.  Directories are walked like `ipfs add -r -H`.
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { MemoryBlockstore } from 'blockstore-core/memory'
import fs from 'node:fs'
import path from 'node:path'

const [profile, chunk, ...roots] = process.argv.slice(2)

function * candidates (root, rel) {
  const st = fs.lstatSync(root)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: fs.readlinkSync(root) }
  } else if (st.isDirectory()) {
    const names = fs.readdirSync(root).sort()
    if (names.length === 0) yield { path: rel }
    for (const name of names) yield * candidates(path.join(root, name), rel + '/' + name)
  } else {
    yield { path: rel, content: fs.readFileSync(root) }
  }
}

const options = profile === 'default' ? {} : { profile }
if (chunk !== '0') options.chunker = fixedSize({ chunkSize: Number(chunk) })

for (const root of roots) {
  let last
  const source = [...candidates(root, path.basename(root))]
  for await (const entry of importer(source, new MemoryBlockstore(), options)) last = entry
  console.log(last.cid.toString())
}
