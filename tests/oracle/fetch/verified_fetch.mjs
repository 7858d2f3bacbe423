// Reads one ipfs:// resource through @helia/verified-fetch from one gateway only, for the
// test suite; writes its bytes to stdout, or the status and body to stderr and exits 1.
//   node verified_fetch.mjs <gateway URL> <ipfs://CID[/path]> [Accept header]
// The node is Helia without libp2p: no DHT, no delegated routing, no DNS; the gateway is
// its only provider (a fallback router naming it) and blocks come by trustless HTTP.
import { fallbackRouter } from '@helia/fallback-router'
import { trustlessGatewayBlockBroker } from '@helia/trustless-gateway-client'
import { createVerifiedFetch } from '@helia/verified-fetch'
import { createHeliaLight } from 'helia'

const [gateway, resource, accept] = process.argv.slice(2)
const helia = createHeliaLight()
// as an ordinary router: helia asks its fallback routers only after the others, and with
// no others its provider search never ends
const gatewayRouter = fallbackRouter({ gateways: [gateway] })
helia.addRouter({
  name: 'the test gateway',
  findProviders: (cid, options) => gatewayRouter.findProviders(cid, options)
})
helia.addBlockBroker(trustlessGatewayBlockBroker({ allowLocal: true, allowInsecure: true }))
await helia.start()
const verifiedFetch = await createVerifiedFetch(helia)
try {
  const headers = accept === undefined ? {} : { accept }
  const response = await verifiedFetch(resource, { headers, signal: AbortSignal.timeout(60000) })
  const body = Buffer.from(await response.arrayBuffer())
  if (!response.ok) {
    process.stderr.write(`${response.status} ${body.toString()}\n`)
    process.exitCode = 1
  } else {
    process.stdout.write(body)
  }
} finally {
  await verifiedFetch.stop()
}
