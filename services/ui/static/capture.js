// AudioWorklet: the microphone as 16-bit little-endian PCM at processorOptions.rate (24000 by
// default), posted in pieces of 100 ms. The context runs at the device's rate (`sampleRate`,
// often 48000): each output sample is the mean of the input samples it covers (a box filter,
// enough against aliasing for speech), or an interpolation between two when the device is slower.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.rate = (options.processorOptions && options.processorOptions.rate) || 24000;
    this.step = sampleRate / this.rate; // input samples per output sample
    this.size = Math.round(this.rate / 10);
    this.piece = new Int16Array(this.size);
    this.used = 0;
    this.position = 0; // where the next output sample starts, in input samples from now
    this.sum = 0; // of the input samples taken towards the next output sample
    this.count = 0;
    this.last = 0; // the previous input sample (for interpolation)
  }

  emit(value) {
    const s = Math.max(-1, Math.min(1, value));
    this.piece[this.used++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.used === this.size) {
      this.port.postMessage(this.piece.buffer, [this.piece.buffer]); // detaches it
      this.piece = new Int16Array(this.size);
      this.used = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.step >= 1) {
      // Downsampling (or none): average each run of `step` input samples.
      for (let i = 0; i < channel.length; i++) {
        this.sum += channel[i];
        this.count++;
        if (++this.position >= this.step) {
          this.emit(this.sum / this.count);
          this.position -= this.step;
          this.sum = 0;
          this.count = 0;
        }
      }
    } else {
      // Upsampling: linear interpolation between neighbouring input samples.
      for (let i = 0; i < channel.length; i++) {
        while (this.position < 1) {
          this.emit(this.last + (channel[i] - this.last) * this.position);
          this.position += this.step;
        }
        this.position -= 1;
        this.last = channel[i];
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
