// CAR files read and written by independent implementations, for the test suite.
//   node car.mjs read <file.car>
//     @ipld/car reads the file; prints JSON {version, roots, blocks: [{cid, size, verified}]},
//     where `verified` says the block's bytes, hashed here, give the digest in its CID.
//   node car.mjs cat <file.car> <cid[/path]> [offset length]
//     ipfs-unixfs-exporter reads a file from the CAR's blocks alone (each one checked against
//     its CID before use) and writes its bytes, or the range, to stdout.
//   node car.mjs write <out.car> <chunk size> <children per node> <path>
//     ipfs-unixfs-importer imports the path (files and folders) and @ipld/car writes its
//     blocks, leaves first as the importer makes them; prints the root CID.
import { CarBlockIterator, CarWriter } from '@ipld/car'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'

const hashers = new Map([identity, sha256, sha512].map(h => [h.code, h]))

async function verified (cid, bytes) {
  const hasher = hashers.get(cid.multihash.code)
  if (!hasher) return false
  const digest = (await hasher.digest(bytes)).digest
  const expected = cid.multihash.digest
  return digest.length === expected.length && digest.every((b, i) => b === expected[i])
}

async function blocksOf (file) {
  const reader = await CarBlockIterator.fromIterable(fs.createReadStream(file))
  const blocks = []
  for await (const { cid, bytes } of reader) blocks.push({ cid, bytes })
  return { version: reader.version, roots: await reader.getRoots(), blocks }
}

async function read (file) {
  const { version, roots, blocks } = await blocksOf(file)
  const out = []
  for (const { cid, bytes } of blocks) {
    out.push({ cid: cid.toString(), size: bytes.length, verified: await verified(cid, bytes) })
  }
  console.log(JSON.stringify({ version, roots: roots.map(String), blocks: out }))
}

async function cat (file, target, offset, length) {
  const { blocks } = await blocksOf(file)
  const byKey = new Map(blocks.map(b => [b.cid.multihash.bytes.toString(), b]))
  // the exporter's block store yields a block as a stream of chunks: here one chunk
  const store = {
    async * get (cid) {
      // an identity CID carries its block; the CAR spec keeps such blocks out of the file
      if (cid.multihash.code === identity.code) {
        yield cid.multihash.digest
        return
      }
      const block = byKey.get(cid.multihash.bytes.toString())
      if (!block) throw new Error(`block ${cid} is not in the CAR`)
      if (!(await verified(cid, block.bytes))) throw new Error(`block ${cid} does not hash to its CID`)
      yield block.bytes
    }
  }
  const entry = await exporter(target, store)
  const options = offset === undefined ? {} : { offset: Number(offset), length: Number(length) }
  for await (const chunk of entry.content(options)) process.stdout.write(chunk)
}

function * entries (root, rel) {
  const st = fs.lstatSync(root)
  if (st.isDirectory()) {
    const names = fs.readdirSync(root).sort()
    if (names.length === 0) yield { path: rel } // an empty folder
    for (const name of names) {
      yield * entries(path.join(root, name), rel + '/' + name)
    }
  } else {
    yield { path: rel, content: fs.readFileSync(root) }
  }
}

async function write (out, chunk, children, source) {
  const blocks = []
  const store = {
    async put (cid, bytes) { blocks.push({ cid, bytes }); return cid },
    async get (cid) { return blocks.find(b => b.cid.equals(cid)).bytes },
    async has (cid) { return blocks.some(b => b.cid.equals(cid)) }
  }
  const options = {
    chunker: fixedSize({ chunkSize: Number(chunk) }),
    layout: balanced({ maxChildrenPerNode: Number(children) })
  }
  const st = fs.statSync(source)
  const input = st.isDirectory()
    ? [...entries(source, path.basename(source))]
    : [{ content: fs.readFileSync(source) }]
  let root
  for await (const entry of importer(input, store, options)) root = entry.cid
  const { writer, out: bytes } = CarWriter.create([CID.asCID(root)])
  const done = new Promise((resolve, reject) => {
    Readable.from(bytes).pipe(fs.createWriteStream(out)).on('finish', resolve).on('error', reject)
  })
  const seen = new Set()
  for (const block of blocks) {
    if (seen.has(block.cid.toString())) continue // the importer stores a repeated chunk again
    seen.add(block.cid.toString())
    await writer.put(block)
  }
  await writer.close()
  await done
  console.log(root.toString())
}

const [command, ...args] = process.argv.slice(2)
const commands = { read, cat, write }
if (!commands[command]) {
  console.error(`unknown command ${command}`)
  process.exit(2)
}
await commands[command](...args)
