// Uploads one generated file with real Uppy (@uppy/core + @uppy/aws-s3) through the
// Companion-compatible routes at ENDPOINT. Node has no XMLHttpRequest: xhr2 provides it.
import XHR2 from 'xhr2'
class XMLHttpRequestWithBlobs extends XHR2 {
  send(body) {
    if (body instanceof Blob) {
      body.arrayBuffer().then((buffer) => super.send(Buffer.from(buffer)))
      return
    }
    super.send(body)
  }
}
globalThis.XMLHttpRequest = XMLHttpRequestWithBlobs
const { default: Uppy } = await import('@uppy/core')
const { default: AwsS3 } = await import('@uppy/aws-s3')

const [endpoint, sizeArg] = process.argv.slice(2)
const size = Number(sizeArg)
const bytes = new Uint8Array(size).map((_, i) => (i * 7) % 251)
const uppy = new Uppy({ autoProceed: false })
uppy.use(AwsS3, { companionEndpoint: endpoint, shouldUseMultipart: () => true, limit: 4 })
uppy.addFile({ name: 'uppy-file.bin', type: 'application/octet-stream', data: new Blob([bytes]) })
const result = await uppy.upload()
console.log(JSON.stringify({
  successful: result.successful.map((f) => ({ key: f.s3Multipart?.key ?? f.meta?.key, uploadURL: f.uploadURL })),
  failed: result.failed.map((f) => String(f.error)),
}))
