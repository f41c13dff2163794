// Voice input: the js_on_load body of components/voice_input.py (in scope: element, trigger, props, upload).
// Two engines turn speech into a question. "browser": the Web Speech API (SpeechRecognition) shows interim text
// as the user speaks and sends the final text. "server": MediaRecorder records WebM/Opus, uploads it, and the
// server transcribes it with whisper.cpp; used where the API is missing, when it fails, or when chosen.
// Hands-free mode keeps listening; a pause of props.pause_s ends each question (the browser's final result plus
// the pause, or an energy VAD on the recording). Events: 'speech_start' (the user began to speak: barge-in) and
// 'utterance' ({text} from the browser engine, or {audio: uploaded file path}).
(() => {
  const $ = (selector) => element.querySelector(selector);
  const micBtn = $('.voice-mic');
  const handsFree = $('.voice-handsfree input');
  const serverOnly = $('.voice-serveronly input');
  const fileInput = $('.voice-file');
  const statusEl = $('.voice-status');
  const interimEl = $('.voice-interim');
  const levelBar = $('.voice-level-bar');
  const vad = props.vad;
  const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
  /** Recogniser errors after which the browser engine cannot work here: switch to server recording. */
  const FALLBACK_ERRORS = ['not-allowed', 'service-not-allowed', 'network', 'audio-capture', 'language-not-supported'];
  const RECORDING_TYPES = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm', 'audio/mp4'];

  /** Live state for tests and debugging. */
  const V = (window.voiceState = {
    engine: Recognition ? 'browser' : 'server', reason: Recognition ? null : 'missing', failure: null,
    listening: false, interim: '', speechStarts: 0, utterances: 0, level: 0, errors: [],
  });

  // ------------------------------------------------------------------------------------- status
  function engineLine() {
    if (V.engine === 'browser') return "Speech recognition: live in your browser (it may use its vendor's online service).";
    const why = {
      missing: 'This browser has no speech recognition',
      chosen: 'Server transcription chosen',
      failed: `Browser speech recognition failed (${V.failure})`,
    }[V.reason];
    return `${why}: using server recording instead (whisper.cpp on this server).`;
  }
  function showStatus(activity = '', warn = false) {
    statusEl.textContent = activity ? `${engineLine()} ${activity}` : engineLine();
    statusEl.classList.toggle('warn', warn || V.reason === 'failed');
  }
  function setInterim(text) {
    V.interim = text;
    interimEl.textContent = text ? `“${text}”` : '';
  }
  function setListening(on) {
    V.listening = on;
    micBtn.classList.toggle('active', on);
    micBtn.setAttribute('aria-pressed', String(on));
    micBtn.textContent = on ? '■ Stop' : '🎤 Speak';
    if (on) showStatus(handsFree.checked ? 'Listening — pause to send.' : 'Listening — click Stop to send.');
    else showStatus();
  }
  function setEngine(engine, reason) {
    V.engine = engine;
    V.reason = reason;
    serverOnly.checked = engine === 'server';
    showStatus();
  }

  // -------------------------------------------------------------------------------- utterances
  let speaking = false; // speech_start was sent for the utterance in progress
  function speechStarted() {
    if (speaking) return;
    speaking = true;
    V.speechStarts += 1;
    trigger('speech_start', { engine: V.engine });
  }
  function send(data) {
    speaking = false;
    V.utterances += 1;
    trigger('utterance', { ...data, engine: V.engine });
  }

  // ---------------------------------------------------------------------------- browser engine
  let recognition = null;

  function startBrowser() {
    const rec = new Recognition();
    recognition = rec;
    rec.lang = props.lang;
    rec.interimResults = true;
    rec.continuous = handsFree.checked;
    rec.maxAlternatives = 1;
    let finalText = '';
    let pauseTimer = null;
    const flush = () => {
      clearTimeout(pauseTimer);
      pauseTimer = null;
      const text = finalText.trim();
      finalText = '';
      setInterim('');
      if (text) send({ text });
    };
    rec.onspeechstart = () => { if (recognition === rec) speechStarted(); };
    rec.onresult = (event) => {
      if (recognition !== rec) return;
      speechStarted();
      let interim = '';
      for (let i = event.resultIndex; i < event.results.length; i += 1) {
        const result = event.results[i];
        if (result.isFinal) finalText += `${result[0].transcript} `;
        else interim += result[0].transcript;
      }
      setInterim(`${finalText}${interim}`.trim());
      if (interim) trigger('heard_so_far', { text: V.interim }); // the model may read the question ahead
      clearTimeout(pauseTimer);
      // A final result ends the question after the pause (hands-free) unless the user goes on speaking.
      if (!interim && finalText.trim()) pauseTimer = setTimeout(flush, handsFree.checked ? props.pause_s * 1000 : 0);
    };
    rec.onerror = (event) => {
      if (recognition !== rec) return;
      if (FALLBACK_ERRORS.includes(event.error)) fallBack(event.error);
      else if (event.error === 'no-speech') showStatus("I didn't hear anything — click the mic and try again.", true);
    };
    rec.onend = () => {
      if (recognition !== rec) return;
      flush();
      if (V.listening && handsFree.checked) { // recognisers end sessions on their own: keep listening
        try { rec.start(); return; } catch (err) { V.errors.push(`restart: ${err.message}`); }
      }
      recognition = null;
      speaking = false;
      setListening(false);
    };
    rec.start();
  }

  /** The browser engine cannot work here: say so, and record for the server instead (the click still counts). */
  function fallBack(error) {
    V.failure = error;
    V.errors.push(`speech recognition: ${error}`);
    const rec = recognition;
    recognition = null;
    if (rec) rec.abort();
    setInterim('');
    speaking = false;
    setEngine('server', 'failed');
    startRecording();
  }

  // ----------------------------------------------------------------------------- server engine
  /** The open microphone while listening: {stream, ctx, analyser, samples, timer, floor}. */
  let mic = null;
  /** The recording in progress: {recorder, chunks, startedAt, lastRead, speechS, silenceS, keep, ended}. */
  let current = null;

  /** Open the microphone and start recording; hands-free mode keeps it open and records question after question. */
  async function startRecording() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      V.errors.push(`microphone: ${err.name}`);
      setListening(false);
      showStatus(`The microphone is not available (${err.name}): upload a recording instead.`, true);
      return;
    }
    const ctx = new AudioContext();
    if (ctx.state !== 'running') ctx.resume(); // the click on the mic allows it
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(analyser);
    mic = { stream, ctx, analyser, samples: new Float32Array(analyser.fftSize), floor: vad.initial_floor, timer: null };
    mic.timer = setInterval(vadStep, vad.step_s * 1000);
    setListening(true);
    record();
    if (!handsFree.checked) speechStarted(); // push-to-talk: pressing the mic starts the user's turn
  }

  function record() {
    const mimeType = RECORDING_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    const recorder = new MediaRecorder(mic.stream, mimeType ? { mimeType } : undefined);
    const now = performance.now();
    const session = { recorder, chunks: [], startedAt: now, lastRead: now, speechS: 0, silenceS: 0, keep: false, ended: false };
    current = session;
    recorder.ondataavailable = (event) => { if (event.data.size) session.chunks.push(event.data); };
    recorder.onstop = () => finishRecording(session);
    recorder.start(250);
  }

  function closeMic() {
    if (!mic) return;
    clearInterval(mic.timer);
    mic.ctx.close();
    mic.stream.getTracks().forEach((track) => track.stop());
    mic = null;
    levelBar.style.width = '0';
  }

  /** Energy VAD: speech is input louder than the noise floor (and an absolute minimum); a pause ends the turn. */
  function vadStep() {
    const session = current;
    if (!mic || !session || session.ended) return;
    mic.analyser.getFloatTimeDomainData(mic.samples);
    const now = performance.now();
    // Timers run late on a busy page: count the real time since the last reading, not the nominal step.
    const dt = Math.min((now - session.lastRead) / 1000, vad.max_gap_s);
    session.lastRead = now;
    let sum = 0;
    for (const x of mic.samples) sum += x * x;
    const rms = Math.sqrt(sum / mic.samples.length);
    V.level = rms;
    levelBar.style.width = `${Math.min(100, rms * 400)}%`;
    const isSpeech = rms > Math.max(vad.min_rms, mic.floor * vad.floor_ratio);
    // The floor follows quiet input quickly and loud input slowly, so speech does not raise it.
    mic.floor += (rms - mic.floor) * (rms < mic.floor ? vad.floor_fall : vad.floor_rise);
    if (isSpeech) {
      session.speechS += dt;
      session.silenceS = 0;
      if (handsFree.checked && session.speechS >= vad.onset_s) speechStarted();
    } else {
      session.silenceS += dt;
    }
    const elapsed = (now - session.startedAt) / 1000;
    if (elapsed >= props.max_audio_s - vad.cap_margin_s) {
      endRecording(session, true);
      showStatus(`Stopped at the ${props.max_audio_s}-second limit.`, true);
    } else if (handsFree.checked) {
      const heard = session.speechS >= vad.min_speech_s;
      if (heard && session.silenceS >= props.pause_s) endRecording(session, true);
      else if (!heard && elapsed >= vad.idle_restart_s) endRecording(session, false); // drop the silence, go on
    }
  }

  function endRecording(session, keep) {
    if (session.ended) return;
    session.ended = true;
    session.keep = keep;
    if (session.recorder.state !== 'inactive') session.recorder.stop();
    else finishRecording(session);
  }

  async function finishRecording(session) {
    if (current === session) current = null;
    if (V.listening && handsFree.checked && mic) {
      record(); // hands-free: the next question is recorded while this one is sent
    } else {
      closeMic();
      speaking = false;
      setListening(false);
    }
    if (session.keep && session.chunks.length) {
      const type = session.recorder.mimeType || 'audio/webm';
      const ext = type.includes('ogg') ? 'ogg' : type.includes('mp4') ? 'm4a' : 'webm';
      await sendFile(new File(session.chunks, `speech.${ext}`, { type }));
    }
  }

  async function sendFile(file) {
    const mb = (n) => (n / 1048576).toFixed(1);
    if (file.size > props.max_upload_bytes) {
      showStatus(`${file.name} is ${mb(file.size)} MB; the limit is ${mb(props.max_upload_bytes)} MB.`, true);
      return;
    }
    try {
      const { path } = await upload(file);
      send({ audio: path, name: file.name });
    } catch (err) {
      V.errors.push(`upload: ${err.message || err}`);
      showStatus(`The recording could not be sent (${err.message || err}).`, true);
    }
  }

  // ---------------------------------------------------------------------------------- controls
  function startListening() {
    if (V.engine === 'server') {
      startRecording();
      return;
    }
    setListening(true);
    try {
      startBrowser();
    } catch (err) {
      fallBack(err.name || 'start failed');
    }
  }

  /** Stop listening; `keep` sends what was heard so far, otherwise it is dropped. */
  function stopListening(keep) {
    V.listening = false;
    if (recognition) {
      if (keep) recognition.stop(); else recognition.abort();
    }
    if (current) {
      endRecording(current, keep);
    } else {
      closeMic();
      if (!recognition) setListening(false);
    }
  }

  micBtn.addEventListener('click', () => (V.listening ? stopListening(true) : startListening()));
  handsFree.addEventListener('change', () => { if (V.listening) stopListening(false); });
  serverOnly.addEventListener('change', () => {
    stopListening(false);
    if (serverOnly.checked) setEngine('server', 'chosen');
    else if (Recognition) setEngine('browser', null);
    else setEngine('server', 'missing');
  });
  fileInput.addEventListener('change', () => {
    const file = fileInput.files[0];
    fileInput.value = '';
    if (file) sendFile(file);
  });
  handsFree.checked = props.hands_free;
  serverOnly.checked = V.engine === 'server';
  serverOnly.disabled = !Recognition;
  showStatus();
})();
