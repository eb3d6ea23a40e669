// devices.js: camera and microphone choice, and a level meter so that
// people see and hear themselves before a consultation.

/** getMedia opens the chosen camera and microphone (either may be absent). */
export async function getMedia({ cameraId, microphoneId, facingMode } = {}) {
  const video = cameraId ? { deviceId: { exact: cameraId } } : facingMode ? { facingMode } : true;
  const audio = microphoneId ? { deviceId: { exact: microphoneId }, echoCancellation: true, noiseSuppression: true } : { echoCancellation: true, noiseSuppression: true };
  try {
    return await navigator.mediaDevices.getUserMedia({ video, audio });
  } catch (e) {
    if (e.name === 'NotAllowedError' || e.name === 'SecurityError') throw e;
    // One of the two may be missing: try each alone.
    const tracks = [];
    for (const c of [{ video }, { audio }]) {
      try { tracks.push(...(await navigator.mediaDevices.getUserMedia(c)).getTracks()); } catch { /* absent */ }
    }
    if (!tracks.length) throw e;
    return new MediaStream(tracks);
  }
}

/** listDevices returns the cameras and microphones (labelled once allowed). */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return { cameras: all.filter((d) => d.kind === 'videoinput'), microphones: all.filter((d) => d.kind === 'audioinput') };
}

/**
 * levelMeter shows the loudness of stream's microphone in bar (a .meter
 * element) until the returned function is called.
 */
export function levelMeter(stream, bar) {
  const track = stream.getAudioTracks()[0];
  if (!track) return () => {};
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const ctx = new Ctx();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  const fill = bar.querySelector('span');
  let raf = 0;
  const tick = () => {
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    // RMS to a 0..100 scale that moves visibly for speech.
    const level = Math.min(100, Math.round(Math.sqrt(sum / data.length) * 300));
    fill.style.width = level + '%';
    bar.setAttribute('aria-valuenow', String(level));
    raf = requestAnimationFrame(tick);
  };
  // Safari and Chrome start an AudioContext suspended without a gesture.
  ctx.resume().catch(() => {});
  tick();
  return () => { cancelAnimationFrame(raf); source.disconnect(); ctx.close().catch(() => {}); };
}
