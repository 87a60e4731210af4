// AudioWorklet: the microphone as 16-bit little-endian PCM, posted in pieces of 100 ms.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 10);
    this.piece = new Int16Array(this.size);
    this.used = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.piece[this.used++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.used === this.size) {
          this.port.postMessage(this.piece.buffer, [this.piece.buffer]); // detaches it
          this.piece = new Int16Array(this.size);
          this.used = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
