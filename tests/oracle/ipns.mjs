// IPNS records made and checked by an independent implementation, js-ipns (npm `ipns`,
// keys from `@libp2p/crypto`), for the test suite.
//
//   node ipns.mjs make <Ed25519|RSA|secp256k1|ECDSA> <value> <record file>
//     makes a key of that type (RSA: 2048 bits, ECDSA: P-256) and a record for <value>
//     (valid one hour, V1 and V2 fields), writes it, prints the name (base36 CIDv1).
//   node ipns.mjs validate <name> <record file>
//     prints "valid <value>" when js-ipns accepts the record for the name, else
//     "invalid <error>" and exits with 1.
import { createIPNSRecord, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import { base36 } from 'multiformats/bases/base36'
import fs from 'node:fs'

const [command, ...args] = process.argv.slice(2)

if (command === 'make') {
  const [type, value, file] = args
  const key = type === 'RSA'
    ? await generateKeyPair('RSA', 2048)
    : type === 'ECDSA' ? await generateKeyPair('ECDSA', 'P-256') : await generateKeyPair(type)
  const record = await createIPNSRecord(key, value, 5n, 60 * 60 * 1000)
  fs.writeFileSync(file, marshalIPNSRecord(record))
  console.log(key.publicKey.toCID().toString(base36))
} else if (command === 'validate') {
  const [name, file] = args
  const bytes = fs.readFileSync(file)
  const multihash = CID.parse(name, base36).multihash
  try {
    await ipnsValidator(multihashToIPNSRoutingKey(multihash), bytes)
    console.log('valid ' + unmarshalIPNSRecord(bytes).value)
  } catch (err) {
    console.log('invalid ' + (err.name ?? 'Error') + ': ' + err.message)
    process.exitCode = 1
  }
} else {
  console.error('usage: node ipns.mjs make TYPE VALUE FILE | validate NAME FILE')
  process.exitCode = 2
}
