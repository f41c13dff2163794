// Avatar player: the js_on_load body of components/avatar.py (in scope: element, trigger, props, watch).
// Sections: boot, scene, avatar loading + morph resolution, audio, lipsync, mood, idle life + states,
// frame loop, upload. Every table (viseme→ARKit, emotion→ARKit, state poses, motion constants, channel
// names) arrives in props from validated JSON files; this file holds only the mechanics.

/**
 * @typedef {{start: number, end: number, value: string}} MouthCue
 * @typedef {{t: number, w: Object<string, number>}} VisemeKeyframe   t: seconds from the clip start
 * @typedef {{label: string, scores: Object<string, number>, intensity: number}} ClipEmotion
 * @typedef {{audio: {url: string, path: string}, offset_s: number, duration_s: number,
 *            track: {mouth_cues: MouthCue[], keyframes: VisemeKeyframe[]}, emotion: ?ClipEmotion}} Clip
 * @typedef {{turn_id: string, state: ('idle'|'listening'|'waiting'|'thinking'|'speaking'), clips: Clip[],
 *            avatar_url: ?(string|{url: string}), avatar_name: ?string}} AvatarFrame
 *   avatar_url switches the avatar (a character's GLB); avatar_name labels it; "Default avatar" returns to it.
 */
(async () => {
  // ----------------------------------------------------------------------------------------- boot
  const motion = props.motion;
  const idleCfg = motion.idle;
  const channels = motion.channels;
  const visemeMap = props.viseme_map;          // {"viseme_aa": {"jawOpen": 0.7, ...}}
  const expressions = props.expressions;        // {"joy": {"mouthSmileLeft": 0.7, ...}}
  const stage = element.querySelector('.avatar-stage');
  const statusEl = element.querySelector('.avatar-status');
  const toolbar = element.querySelector('.avatar-toolbar');
  const reportEl = element.querySelector('.avatar-report');
  stage.style.height = `${props.height}px`;
  if (!props.allow_upload) toolbar.classList.add('hidden');

  /** Live state for tests and debugging. */
  const S = (window.avatarState = {
    ready: false, state: 'idle', emotion: 'neutral', viseme: 'sil', morphs: {}, playbackTime: 0,
    playing: false, clipsPlayed: 0, framesRendered: 0, fps: 0, blinks: 0, turnId: null, clock: 'none',
    threeSource: null, avatarSource: null, morphReport: null, errors: [], warnings: [], interrupts: [],
  });
  const showStatus = (text, isError = false) => {
    statusEl.textContent = text;
    statusEl.classList.toggle('error', isError);
  };
  const fail = (msg, err) => {
    S.errors.push(msg);
    console.error('[avatar]', msg, err || '');
    showStatus(msg, true);
  };
  const warn = (msg) => {
    S.warnings.push(msg);
    console.warn('[avatar]', msg);
  };
  const clamp01 = (x) => Math.min(1, Math.max(0, x));
  const lower = (name) => name.toLowerCase();
  const rand = ([lo, hi]) => lo + Math.random() * (hi - lo);
  const approach = (dt, seconds) => 1 - Math.exp((-3 * dt) / Math.max(seconds, 1e-3)); // ~95% in `seconds`

  async function loadThree() {
    try {
      const mod = await import(new URL(props.bundle_url, document.baseURI).href);
      S.threeSource = 'bundle';
      return mod;
    } catch (err) {
      warn(`three.js bundle not available (${err.message}); loading three from the CDN ${props.cdn_urls.three}`);
      const [three, gltf, room] = await Promise.all([
        import(props.cdn_urls.three), import(props.cdn_urls.GLTFLoader), import(props.cdn_urls.RoomEnvironment),
      ]);
      S.threeSource = 'cdn';
      return { ...three, GLTFLoader: gltf.GLTFLoader, RoomEnvironment: room.RoomEnvironment };
    }
  }

  let THREE;
  try {
    THREE = await loadThree();
  } catch (err) {
    fail(`three.js could not be loaded: ${err.message}`, err);
    return;
  }

  // ---------------------------------------------------------------------------------------- scene
  /** True on CPU rasterisers (SwiftShader, llvmpipe): there MSAA costs ~40% of the frame rate, so it is off. */
  function softwareRenderer() {
    const gl = document.createElement('canvas').getContext('webgl2');
    if (!gl) return false;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    gl.getExtension('WEBGL_lose_context')?.loseContext();
    return /swiftshader|llvmpipe|software/i.test(String(name));
  }
  const software = softwareRenderer();
  const renderer = new THREE.WebGLRenderer({ antialias: !software, alpha: true });
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.toneMapping = THREE.ACESFilmicToneMapping;
  renderer.toneMappingExposure = 1.0;
  // A CPU rasteriser pays per pixel: render at a lower resolution there (the browser scales the canvas up).
  renderer.setPixelRatio(software ? idleCfg.software_pixel_ratio : Math.min(window.devicePixelRatio || 1, 2));
  stage.appendChild(renderer.domElement);

  const scene = new THREE.Scene();
  const pmrem = new THREE.PMREMGenerator(renderer);
  scene.environment = pmrem.fromScene(new THREE.RoomEnvironment(), 0.04).texture;
  scene.environmentIntensity = 0.3;
  pmrem.dispose();

  const camera = new THREE.PerspectiveCamera(26, 1, 0.01, 100);
  const lights = new THREE.Group();
  const key = new THREE.DirectionalLight(0xffeedd, 1.7);
  const fill = new THREE.DirectionalLight(0xd0ddff, 0.5);
  const rim = new THREE.DirectionalLight(0xe8f0ff, 2.2);
  lights.add(key, fill, rim, key.target, new THREE.HemisphereLight(0xffffff, 0x30343c, 0.25));
  fill.target = key.target;
  rim.target = key.target;
  scene.add(lights);

  const pivot = new THREE.Group(); // rotates around the neck: head motion when the rig has no head bone
  scene.add(pivot);
  /** Head box used for framing: {center: Vector3, size: Vector3}. */
  let focus = { center: new THREE.Vector3(0, 1.6, 0), size: new THREE.Vector3(0.3, 0.35, 0.3) };
  let eyeAnchor = focus.center.clone();

  function frameCamera() {
    const width = Math.max(stage.clientWidth, 1);
    const height = Math.max(stage.clientHeight, 1);
    renderer.setSize(width, height, false);
    camera.aspect = width / height;
    const { center, size } = focus;
    const halfV = THREE.MathUtils.degToRad(camera.fov) / 2;
    const halfH = Math.atan(Math.tan(halfV) * camera.aspect);
    const dist = Math.max(size.y / 2 / Math.tan(halfV), size.x / 2 / Math.tan(halfH)) + size.z / 2;
    camera.position.set(center.x, center.y + size.y * 0.04, center.z + dist);
    camera.near = dist / 20;
    camera.far = dist * 20;
    camera.lookAt(center);
    camera.updateProjectionMatrix();
    const s = size.y; // lights sit around the head, scaled to it
    key.position.set(center.x + 1.4 * s, center.y + 1.2 * s, center.z + 2.2 * s);
    fill.position.set(center.x - 2.0 * s, center.y + 0.2 * s, center.z + 1.6 * s);
    rim.position.set(center.x + 0.4 * s, center.y + 1.8 * s, center.z - 2.4 * s);
    key.target.position.copy(center);
  }
  new ResizeObserver(frameCamera).observe(stage);

  // ----------------------------------------------------------------- avatar loading + morph resolution
  const loader = new THREE.GLTFLoader();
  let model = null;
  /** lowercase morph name → {name, slots: [{mesh, index}]} */
  let morphIndex = new Map();
  let mode = 'none';         // how speech drives the face: oculus | arkit | jaw | none
  let headBone = null;
  let jawBone = null;
  let eyeBones = [];
  const restQuat = new Map(); // bone → rest quaternion

  function findBone(root, test) {
    let found = null;
    root.traverse((o) => { if (!found && (o.isBone || o.type === 'Object3D') && test(lower(o.name))) found = o; });
    return found;
  }

  /** Box of the vertices any morph target moves: the face. Null when the avatar has no morphs. */
  function morphedRegion(root) {
    const box = new THREE.Box3();
    const v = new THREE.Vector3();
    root.traverse((o) => {
      const targets = o.isMesh && o.geometry.morphAttributes.position;
      if (!targets) return;
      const base = o.geometry.attributes.position;
      const moved = new Uint8Array(base.count);
      for (const t of targets) {
        for (let i = 0; i < base.count; i++) {
          if (!moved[i] && Math.abs(t.getX(i)) + Math.abs(t.getY(i)) + Math.abs(t.getZ(i)) > 1e-4) moved[i] = 1;
        }
      }
      for (let i = 0; i < base.count; i++) {
        if (moved[i]) box.expandByPoint(v.fromBufferAttribute(base, i).applyMatrix4(o.matrixWorld));
      }
    });
    return box.isEmpty() ? null : box;
  }

  /** Where the eyes are (mean of the eye nodes or bones), for eye contact; the face's centre when none is named. */
  function computeEyeAnchor(root) {
    const eyes = [];
    root.traverse((o) => { if (/eye/.test(lower(o.name)) && !/lid|lash|brow/.test(lower(o.name))) eyes.push(o); });
    if (!eyes.length) return focus.center.clone();
    const sum = new THREE.Vector3();
    for (const e of eyes) sum.add(e.getWorldPosition(new THREE.Vector3()));
    return sum.divideScalar(eyes.length);
  }

  function computeFocus(root) {
    const face = morphedRegion(root);
    const whole = new THREE.Box3().setFromObject(root);
    if (face) {
      // The morphed region spans brows to chin; widen it to the whole head plus a bit of neck.
      const size = face.getSize(new THREE.Vector3());
      const center = face.getCenter(new THREE.Vector3());
      const h = Math.max(size.y, size.x) * 1.75;
      return { center: new THREE.Vector3(center.x, center.y + h * 0.02, center.z), size: new THREE.Vector3(h * 0.9, h, size.z) };
    }
    if (headBone) {
      const c = headBone.getWorldPosition(new THREE.Vector3());
      const h = whole.getSize(new THREE.Vector3()).y * 0.16;
      return { center: c.add(new THREE.Vector3(0, h * 0.3, 0)), size: new THREE.Vector3(h * 0.9, h, h) };
    }
    return { center: whole.getCenter(new THREE.Vector3()), size: whole.getSize(new THREE.Vector3()).multiplyScalar(1.1) };
  }

  function resolveMorphs(root, source) {
    morphIndex = new Map();
    let meshes = 0;
    root.traverse((o) => {
      if (!o.isMesh || !o.morphTargetDictionary) return;
      meshes += 1;
      for (const [name, index] of Object.entries(o.morphTargetDictionary)) {
        const k = lower(name);
        if (!morphIndex.has(k)) morphIndex.set(k, { name, slots: [] });
        morphIndex.get(k).slots.push({ mesh: o, index });
      }
    });
    const has = (n) => morphIndex.has(lower(n));
    const visemeNames = props.viseme_names;
    const visemesFound = visemeNames.filter(has);
    const arkitNames = [...new Set(Object.values(visemeMap).flatMap((pose) => Object.keys(pose)))];
    const arkitFound = arkitNames.filter(has);
    const exprNames = [...new Set(Object.values(expressions).flatMap((pose) => Object.keys(pose)))];
    const exprFound = exprNames.filter(has);
    headBone = findBone(root, (n) => n.includes('head') && !/end|top/.test(n));
    jawBone = findBone(root, (n) => n.includes('jaw'));
    const eyeMorphs = [...channels.look_left, ...channels.look_right].every(has);
    eyeBones = eyeMorphs ? [] : ['left', 'right']  // eye bones only when there are no eyeLook morphs
      .map((side) => findBone(root, (n) => n.includes('eye') && n.includes(side) && !n.includes('lid')))
      .filter(Boolean);
    restQuat.clear();
    for (const b of [headBone, jawBone, ...eyeBones]) if (b) restQuat.set(b, b.quaternion.clone());

    const warnings = [];
    if (visemesFound.length >= visemeNames.length / 2) {
      mode = 'oculus';
      if (visemesFound.length < visemeNames.length) {
        warnings.push(`missing Oculus visemes: ${visemeNames.filter((n) => !has(n)).join(', ')}`);
      }
    } else if (arkitFound.length > 0) {
      mode = 'arkit';
      if (arkitFound.length < arkitNames.length) {
        warnings.push(`viseme map uses ARKit morphs the avatar lacks: ${arkitNames.filter((n) => !has(n)).join(', ')}`);
      }
    } else if (jawBone) {
      mode = 'jaw';
      warnings.push(`no Oculus or ARKit mouth morphs: speech moves the jaw bone "${jawBone.name}" only`);
    } else {
      mode = 'none';
      warnings.push('no Oculus viseme or ARKit morphs and no jaw bone: the mouth will not move');
    }
    if (exprFound.length === 0) warnings.push('no ARKit expression morphs: emotions are not shown');
    const blink = channels.blink.every(has);
    if (!blink) warnings.push(`no blink morphs (${channels.blink.join(', ')})`);
    const looks = [channels.look_left, channels.look_right, channels.look_up, channels.look_down];
    const eyeNames = [...new Set(looks.flat())];
    const report = {
      source, mode, meshes, morphCount: morphIndex.size, morphNames: [...morphIndex.values()].map((m) => m.name),
      visemesFound, arkitFound, expressionMorphsFound: exprFound, blink,
      eyeMorphsFound: eyeNames.filter(has), eyeBones: eyeBones.map((b) => b.name),
      gaze: eyeMorphs || eyeBones.length === 2,
      headBone: headBone ? headBone.name : null, jawBone: jawBone ? jawBone.name : null, warnings,
    };
    return { ...report, ...checkAvatar(report, { visemeNames, arkitNames, exprNames, eyeNames }) };
  }

  /** The GLB check shown under "Avatar check": per feature what drives it and what falls back; a verdict
   *  (full | partial | none) and, for a GLB with nothing to animate, one clear message. */
  function checkAvatar(r, wanted) {
    const of = (found, all) => `${found.length} of ${all.length}`;
    const lines = [];
    const lipsync = {
      oculus: `Lip-sync: Oculus visemes (${of(r.visemesFound, wanted.visemeNames)})`,
      arkit: `Lip-sync: ARKit mouth morphs through the viseme map (${of(r.arkitFound, wanted.arkitNames)}); no Oculus visemes`,
      jaw: `Lip-sync: falls back to opening the jaw bone "${r.jawBone}" (no viseme or ARKit mouth morphs)`,
      none: 'Lip-sync: none (no viseme or ARKit mouth morphs, no jaw bone)',
    }[r.mode];
    lines.push(lipsync);
    lines.push(r.expressionMorphsFound.length
      ? `Emotions: ARKit expression morphs (${of(r.expressionMorphsFound, wanted.exprNames)})`
      : 'Emotions: not shown (no ARKit expression morphs)');
    lines.push(r.blink ? `Blink: ${channels.blink.join(', ')}` : 'Blink: none (no eyeBlink morphs)');
    if (r.eyeMorphsFound.length === wanted.eyeNames.length) {
      lines.push(`Gaze: eyeLook morphs (${of(r.eyeMorphsFound, wanted.eyeNames)})`);
    } else if (r.eyeBones.length === 2) lines.push(`Gaze: falls back to the eye bones ${r.eyeBones.join(', ')}`);
    else lines.push(`Gaze: none (eyeLook morphs ${of(r.eyeMorphsFound, wanted.eyeNames)}, no pair of eye bones)`);
    lines.push(r.headBone ? `Head motion: head bone "${r.headBone}"`
      : 'Head motion: falls back to turning the whole model (no head bone)');
    const animated = [r.mode !== 'none', r.expressionMorphsFound.length > 0, r.blink, r.gaze];
    const verdict = animated.every(Boolean) && r.mode !== 'jaw' ? 'full' : animated.some(Boolean) ? 'partial' : 'none';
    const message = verdict === 'none'
      ? 'This GLB has no viseme, ARKit or eye morphs and no jaw or eye bones: it is shown, but it cannot move its ' +
        'mouth, show emotions, blink or look around. Use a GLB with Oculus viseme_* or ARKit blend shapes ' +
        '(Ready Player Me-style exports, ARKit-rigged models, or this project\'s builder).'
      : '';
    return { lines, verdict, message };
  }

  function showReport(report) {
    reportEl.querySelector('.avatar-report-title').textContent = `Avatar check: ${report.source} (${report.verdict})`;
    const list = reportEl.querySelector('ul');
    list.replaceChildren(...[...report.lines, ...(report.message ? [report.message] : [])].map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
    reportEl.classList.toggle('avatar-report-bad', report.verdict === 'none');
    if (report.verdict === 'none') reportEl.open = true;
  }

  function disposeModel(root) {
    root.traverse((o) => {
      if (!o.isMesh) return;
      o.geometry.dispose();
      for (const m of [].concat(o.material)) {
        for (const v of Object.values(m)) if (v && v.isTexture) v.dispose();
        m.dispose();
      }
    });
  }

  /** Replace the current avatar with a parsed glTF; the caller keeps the old one if parsing failed. */
  function installAvatar(gltf, source) {
    const root = gltf.scene;
    if (model) {
      pivot.remove(model);
      disposeModel(model);
    }
    pivot.position.set(0, 0, 0);
    pivot.rotation.set(0, 0, 0);
    root.position.set(0, 0, 0);
    pivot.add(root);
    pivot.updateMatrixWorld(true);
    model = root;
    const report = resolveMorphs(root, source);
    focus = computeFocus(root);
    eyeAnchor = computeEyeAnchor(root);
    const neck = new THREE.Vector3(focus.center.x, focus.center.y - focus.size.y * 0.45, focus.center.z);
    pivot.position.copy(neck);
    root.position.copy(neck).negate();
    frameCamera();
    S.morphReport = report;
    S.avatarSource = source;
    S.ready = true;
    showStatus(report.verdict === 'none' ? `${source}: nothing to animate (see Avatar check)`
      : `${source}: ${report.mode} lip-sync, ${report.morphCount} morphs` +
        (report.warnings.length ? ` — ${report.warnings.join('; ')}` : ''));
    showReport(report);
    trigger('avatar_loaded', report);
  }

  async function loadAvatarFromUrl(url, source) {
    try {
      const gltf = await loader.loadAsync(new URL(url, document.baseURI).href);
      installAvatar(gltf, source);
    } catch (err) {
      fail(`could not load avatar ${source}: ${err.message || err}${model ? '; keeping the current avatar' : ''}`, err);
    }
  }

  // ---------------------------------------------------------------------------------------- audio
  // One AudioContext; clips of a turn are decoded as they arrive and scheduled back to back on its clock,
  // which is also the lipsync clock. Browsers start it suspended: any click on the page (e.g. Send) resumes it.
  const actx = new AudioContext();
  const unlock = () => { if (actx.state !== 'running') actx.resume(); };
  document.addEventListener('pointerdown', unlock, { capture: true });
  document.addEventListener('keydown', unlock, { capture: true });

  /** The turn being played: {id, t0, cursor, items: [{clip, start, end, source}], pending, keys, ended, wall}. */
  let turn = null;

  function turnClock(t) {
    return t.wall ? performance.now() / 1000 : actx.currentTime;
  }

  function stopTurn() {
    if (!turn) return;
    for (const item of turn.items) {
      if (item.source) {
        item.source.onended = null;
        try { item.source.stop(); } catch (err) { /* already stopped */ }
        item.source.disconnect();
      }
    }
    turn = null;
    S.playing = false;
    moodHoldUntil = Math.min(moodHoldUntil, performance.now() / 1000);
  }

  async function decodeClip(clip) {
    const url = new URL(clip.audio.url, document.baseURI).href;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${url}`);
    return actx.decodeAudioData(await response.arrayBuffer());
  }

  function enqueueClip(t, clip) {
    const decoded = decodeClip(clip);
    t.pending += 1;
    t.chain = t.chain.then(async () => {
      let buffer = null;
      try {
        buffer = await decoded;
      } catch (err) {
        fail(`audio clip could not be decoded: ${err.message}`, err);
      }
      t.pending -= 1;
      if (turn !== t) return;
      if (actx.state !== 'running') await Promise.race([actx.resume(), new Promise((r) => setTimeout(r, 150))]);
      if (t.t0 === null) {
        t.wall = actx.state !== 'running';
        if (t.wall) warn('audio is blocked until the page gets a click: lips follow the wall clock, muted');
        S.clock = t.wall ? 'wall' : 'audio';
        t.t0 = turnClock(t) + 0.05;
        t.cursor = t.t0;
      }
      const duration = buffer ? buffer.duration : clip.duration_s;
      const start = Math.max(t.cursor, t.t0 + (clip.offset_s || 0), turnClock(t) + 0.02);
      const item = { clip, start, end: start + duration, source: null };
      if (buffer && !t.wall) {
        item.source = actx.createBufferSource();
        item.source.buffer = buffer;
        item.source.connect(actx.destination);
        item.source.start(start);
      }
      t.cursor = item.end;
      t.items.push(item);
    });
  }

  function clipKey(clip) {
    return `${clip.audio && (clip.audio.path || clip.audio.url)}@${clip.offset_s || 0}`;
  }

  /** Turns stopped by a barge-in: frames of theirs still in flight are ignored. */
  const interrupted = new Set();

  /**
   * Barge-in: stop the turn being played at once and report what the user heard of it.
   * @returns {{turn_id: ?string, playing: boolean, clips_heard: number, heard_s: number}} clips_heard counts
   *   the clips that started playing (fully or partly heard); heard_s is the playback time of the turn.
   */
  function interruptTurn() {
    const report = { turn_id: S.turnId, playing: false, clips_heard: 0, heard_s: 0 };
    if (turn) {
      const now = turn.t0 === null ? -Infinity : turnClock(turn);
      report.turn_id = turn.id;
      report.playing = !turn.ended;
      report.clips_heard = turn.items.filter((item) => now >= item.start).length;
      report.heard_s = turn.t0 === null ? 0 : Math.max(0, now - turn.t0);
      interrupted.add(turn.id);
      stopTurn();
    }
    S.interrupts.push(report);
    return report;
  }
  S.interrupt = interruptTurn; // window.avatarState belongs to the newest mounted player: call it through there

  /** The avatar "Default avatar" returns to: the page's default, or the character a frame switched to. */
  let home = { url: props.glb_url, source: props.glb_name };

  /** @param {AvatarFrame} frame */
  function onFrame(frame) {
    if (!frame || interrupted.has(frame.turn_id)) return;
    if (frame.avatar_url) {
      const url = typeof frame.avatar_url === 'string' ? frame.avatar_url : frame.avatar_url.url;
      const next = { url, source: frame.avatar_name || url };
      if (url && (next.url !== home.url || S.avatarSource !== next.source)) { // a new one, or back from an upload
        home = next;
        loadAvatarFromUrl(home.url, home.source);
      }
    }
    const clips = frame.clips || [];
    if (!turn || turn.id !== frame.turn_id) {
      stopTurn();
      if (clips.length) {
        turn = { id: frame.turn_id, t0: null, cursor: 0, items: [], pending: 0, keys: new Set(), ended: false, wall: false, chain: Promise.resolve() };
      }
    }
    S.turnId = frame.turn_id;
    requestedState = frame.state;
    if (!turn) return;
    for (const clip of clips) {
      const k = clipKey(clip);
      if (turn.keys.has(k)) continue;
      turn.keys.add(k);
      turn.ended = false;
      enqueueClip(turn, clip);
    }
  }

  /** Per frame: the playing clip and the time inside it; fires playback_end when the queue drains. */
  function audioStep() {
    if (!turn || turn.t0 === null) return null;
    const now = turnClock(turn);
    S.playbackTime = Math.max(0, now - turn.t0);
    let current = null;
    for (const item of turn.items) {
      if (now >= item.start && now < item.end) current = item;
      if (now >= item.end && !item.counted) {
        item.counted = true;
        S.clipsPlayed += 1;
      }
    }
    const drained = turn.pending === 0 && turn.items.every((i) => now >= i.end);
    S.playing = !drained;
    if (drained && !turn.ended) {
      turn.ended = true;
      moodHoldUntil = performance.now() / 1000;
      trigger('playback_end', {
        turn_id: turn.id, clips_played: turn.items.length, duration_s: turn.cursor - turn.t0, clock: S.clock,
      });
    }
    if (!current) return null;
    if (current !== activeItem) {
      activeItem = current;
      if (current.clip.emotion) setMood(current.clip.emotion);
    }
    return { item: current, t: now - current.start };
  }
  let activeItem = null;

  // -------------------------------------------------------------------------------------- lipsync
  /** Viseme weights of a track at time t (s from the clip start), linearly interpolated between keyframes. */
  function sampleKeyframes(keyframes, t) {
    if (!keyframes || keyframes.length === 0 || t < keyframes[0].t) return {};
    let lo = 0;
    let hi = keyframes.length - 1;
    if (t >= keyframes[hi].t) return keyframes[hi].w;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (keyframes[mid].t <= t) lo = mid; else hi = mid;
    }
    const a = keyframes[lo];
    const b = keyframes[hi];
    const u = (t - a.t) / Math.max(b.t - a.t, 1e-6);
    const out = {};
    for (const [v, w] of Object.entries(a.w)) out[v] = w * (1 - u);
    for (const [v, w] of Object.entries(b.w)) out[v] = (out[v] || 0) + w * u;
    return out;
  }

  const visemeCur = {}; // smoothed viseme weights
  function lipsyncStep(dt, playing) {
    const target = playing ? sampleKeyframes(playing.item.clip.track.keyframes, playing.t) : {};
    const k = 1 - Math.exp(-dt * idleCfg.viseme_smoothing_hz);
    for (const v of new Set([...Object.keys(visemeCur), ...Object.keys(target)])) {
      visemeCur[v] = (visemeCur[v] || 0) + ((target[v] || 0) - (visemeCur[v] || 0)) * k;
      if (visemeCur[v] < 1e-4 && !target[v]) delete visemeCur[v];
    }
    let best = 'viseme_sil';
    let bestW = 0.05;
    let amount = 0;
    for (const [v, w] of Object.entries(visemeCur)) {
      if (lower(v) === 'viseme_sil') continue;
      amount += w;
      if (w > bestW) { best = v; bestW = w; }
    }
    S.viseme = best.replace(/^viseme_/, '');
    if (S.lipLog && playing) logLipFrame(playing, target);
    return clamp01(amount); // how much speech owns the mouth
  }

  /** A/V sync measurement (bench/lipsync/av_sync.py sets avatarState.lipLog = [] and lipClips = []): per frame the
   *  clip, its time on the audio clock and the dominant target and shown visemes; each clip's keyframes once. */
  function logLipFrame(playing, target) {
    const item = playing.item;
    if (!item.logged) S.lipClips.push({ start: item.start, keys: item.clip.track.keyframes });
    item.logged = true;
    const top = Object.entries(target).reduce((a, b) => (b[1] > a[1] ? b : a), ['viseme_sil', 0])[0];
    S.lipLog.push({ start: item.start, t: playing.t, target: top.replace(/^viseme_/, ''), shown: S.viseme });
  }

  function applySpeech(want) {
    if (mode === 'oculus') {
      for (const [v, w] of Object.entries(visemeCur)) add(want, v, w);
    } else if (mode === 'arkit' || mode === 'jaw') {
      for (const [v, w] of Object.entries(visemeCur)) {
        const pose = visemeMap[v];
        if (pose) for (const [m, mw] of Object.entries(pose)) add(want, m, w * mw);
      }
    }
  }

  // ----------------------------------------------------------------------------------------- mood
  const moodCur = new Map(); // lowercase ARKit name → weight
  let moodTarget = {};
  let moodHoldUntil = Infinity; // after this (s, performance clock) the mood decays to neutral

  /** @param {ClipEmotion} emotion */
  function setMood(emotion) {
    const pose = expressions[emotion.label] || {};
    // A confident-enough label shows clearly: intensity (the classifier's confidence) starts at a readable floor.
    const floor = idleCfg.mood_min_intensity;
    const intensity = floor + (1 - floor) * clamp01(emotion.intensity ?? 1);
    moodTarget = Object.fromEntries(Object.entries(pose).map(([m, w]) => [lower(m), w * intensity]));
    moodHoldUntil = Infinity;
    S.emotion = emotion.label;
  }

  function moodStep(dt) {
    const decaying = performance.now() / 1000 > moodHoldUntil + 0.8;
    if (decaying && Object.keys(moodTarget).length) {
      moodTarget = {};
      S.emotion = 'neutral';
    }
    const k = approach(dt, decaying ? idleCfg.mood_decay_s : idleCfg.mood_blend_s);
    for (const m of new Set([...moodCur.keys(), ...Object.keys(moodTarget)])) {
      const w = (moodCur.get(m) || 0) + ((moodTarget[m] || 0) - (moodCur.get(m) || 0)) * k;
      if (w < 1e-4 && !moodTarget[m]) moodCur.delete(m); else moodCur.set(m, w);
    }
  }

  const isMouth = (name) => channels.mouth_prefixes.some((p) => name.startsWith(lower(p)));
  function add(want, name, w) {
    const k = lower(name);
    want.set(k, (want.get(k) || 0) + w);
  }

  // -------------------------------------------------------------------------- idle life + states
  let requestedState = 'idle';
  const stateW = Object.fromEntries(Object.keys(motion.states).map((s) => [s, s === 'idle' ? 1 : 0]));
  let nextBlink = performance.now() / 1000 + rand(idleCfg.blink_interval_s);
  let blinkStart = -1;
  let blinkPeaked = true;
  let nextSaccade = 0;
  const gaze = { x: 0, y: 0, tx: 0, ty: 0 };

  /** The state shown: "speaking" while clips play, else what the last frame asked for (speaking → idle). */
  function effectiveState() {
    if (S.playing) return 'speaking';
    return requestedState === 'speaking' ? 'idle' : requestedState;
  }

  function lifeStep(dt, now, want, mouthFree) {
    S.state = effectiveState();
    const k = approach(dt, idleCfg.state_blend_s);
    for (const s of Object.keys(stateW)) stateW[s] += ((s === S.state ? 1 : 0) - stateW[s]) * k;
    let gx = 0, gy = 0, nod = 0, tilt = 0, saccadeScale = 0, lookAtCamera = 0;
    for (const [s, w] of Object.entries(stateW)) {
      if (w < 1e-3) continue;
      const st = motion.states[s];
      for (const [m, mw] of Object.entries(st.pose)) add(want, m, mw * w * (isMouth(lower(m)) ? mouthFree : 1));
      gx += st.gaze[0] * w;
      gy += st.gaze[1] * w;
      saccadeScale += st.saccade_scale * w;
      lookAtCamera += st.look_at_camera * w;
      nod += st.nod_amplitude_rad * w * Math.sin((2 * Math.PI * now) / st.nod_period_s);
      tilt += st.tilt_rad * w;
    }
    // blinks
    if (now >= nextBlink) {
      blinkStart = now;
      blinkPeaked = false;
      nextBlink = now + rand(idleCfg.blink_interval_s);
      S.blinks += 1;
    }
    let bp = blinkStart >= 0 ? (now - blinkStart) / idleCfg.blink_duration_s : 2;
    if (!blinkPeaked && bp >= 0.5) { // at low frame rates, still show the closed eyes for one frame
      bp = 0.5;
      blinkPeaked = true;
    }
    const blink = bp < 1 ? Math.sin(Math.PI * bp) : 0;
    for (const m of channels.blink) want.set(lower(m), Math.max(want.get(lower(m)) || 0, blink));
    // eye contact: turn the eyes towards the camera (as gaze weights: a full look morph is eye_rotation_rad)
    const toCamera = camera.position.clone().sub(eyeAnchor);
    gx += lookAtCamera * Math.atan2(toCamera.x, toCamera.z) / idleCfg.eye_rotation_rad;
    gy += lookAtCamera * Math.atan2(toCamera.y, Math.hypot(toCamera.x, toCamera.z)) / idleCfg.eye_rotation_rad;
    // saccades around the state's gaze target (small while speaking: it holds eye contact)
    if (now >= nextSaccade) {
      nextSaccade = now + rand(idleCfg.saccade_interval_s);
      gaze.tx = (Math.random() * 2 - 1) * idleCfg.saccade_amplitude * saccadeScale;
      gaze.ty = (Math.random() * 2 - 1) * idleCfg.saccade_amplitude * 0.5 * saccadeScale;
    }
    const gk = 1 - Math.exp(-dt * 30);
    gaze.x += (gx + gaze.tx - gaze.x) * gk;
    gaze.y += (gy + gaze.ty - gaze.y) * gk;
    const look = (names, w) => { for (const m of names) add(want, m, clamp01(w)); };
    look(channels.look_left, gaze.x);
    look(channels.look_right, -gaze.x);
    look(channels.look_up, gaze.y);
    look(channels.look_down, -gaze.y);
    for (const eye of eyeBones) {
      eye.quaternion.copy(restQuat.get(eye)).multiply(new THREE.Quaternion().setFromEuler(
        new THREE.Euler(-gaze.y * idleCfg.eye_rotation_rad * 0.6, gaze.x * idleCfg.eye_rotation_rad, 0)));
    }
    // head: state nod + tilt + slow sway; breathing lifts the whole avatar slightly
    const sway = idleCfg.head_sway_rad;
    const e = new THREE.Euler(
      nod + sway * 0.5 * Math.sin(now * 0.73) - gaze.y * 0.05,
      sway * Math.sin(now * 0.41 + 1.3) + gaze.x * 0.08,
      tilt + sway * 0.4 * Math.sin(now * 0.29 + 0.7),
    );
    if (headBone) {
      headBone.quaternion.copy(restQuat.get(headBone)).multiply(new THREE.Quaternion().setFromEuler(e));
    } else {
      pivot.rotation.copy(e);
    }
    const neckY = focus.center.y - focus.size.y * 0.45;
    pivot.position.y = neckY + focus.size.y * idleCfg.breath_amplitude * Math.sin((2 * Math.PI * now) / idleCfg.breath_period_s);
  }

  function applyWant(want) {
    const morphs = {};
    for (const [k, entry] of morphIndex) {
      const w = clamp01(want.get(k) || 0);
      for (const { mesh, index } of entry.slots) mesh.morphTargetInfluences[index] = w;
      morphs[entry.name] = Math.round(w * 1000) / 1000;
    }
    S.morphs = morphs;
    if (jawBone) {
      const open = mode === 'jaw' ? clamp01(want.get(lower(channels.jaw_open)) || 0) : 0;
      jawBone.quaternion.copy(restQuat.get(jawBone)).multiply(
        new THREE.Quaternion().setFromAxisAngle(new THREE.Vector3(1, 0, 0), open * idleCfg.jaw_bone_open_rad));
    }
  }

  // ----------------------------------------------------------------------------------- frame loop
  // A frame cap: smooth motion needs no more, and on a CPU rasteriser every frame takes CPU from the page's audio.
  const frameInterval = 1 / (software ? idleCfg.software_max_fps : idleCfg.max_fps);
  let last = performance.now() / 1000;
  let fpsWindowStart = last;
  let fpsFrames = 0;
  function tick() {
    if (!element.isConnected) {
      renderer.setAnimationLoop(null);
      stopTurn();
      actx.close();
      renderer.dispose();
      return;
    }
    const now = performance.now() / 1000;
    if (now - last < frameInterval * 0.9) return;
    const dt = Math.min(now - last, 0.3); // time-true blending down to ~4 fps; a stall longer than that is skipped
    last = now;
    const playing = audioStep();
    const speech = lipsyncStep(dt, playing) * idleCfg.speech_mouth_override;
    moodStep(dt);
    const want = new Map();
    for (const [m, w] of moodCur) add(want, m, w * (isMouth(m) ? 1 - speech : 1));
    lifeStep(dt, now, want, 1 - speech);
    applySpeech(want);
    applyWant(want);
    renderer.render(scene, camera);
    S.framesRendered += 1;
    fpsFrames += 1;
    if (now - fpsWindowStart >= 1) {
      S.fps = Math.round((fpsFrames / (now - fpsWindowStart)) * 10) / 10;
      fpsWindowStart = now;
      fpsFrames = 0;
    }
  }
  frameCamera();
  renderer.setAnimationLoop(tick);

  // --------------------------------------------------------------------------------------- upload
  const fileInput = element.querySelector('.avatar-file');
  fileInput.addEventListener('change', async () => {
    const file = fileInput.files[0];
    fileInput.value = '';
    if (!file) return;
    const mb = (n) => (n / 1048576).toFixed(1);
    if (file.size > props.max_upload_bytes) {
      fail(`${file.name} is ${mb(file.size)} MB; the limit is ${mb(props.max_upload_bytes)} MB. Keeping the current avatar.`);
      return;
    }
    const data = await file.arrayBuffer();
    const magic = new TextDecoder().decode(new Uint8Array(data, 0, Math.min(4, data.byteLength)));
    if (magic !== 'glTF') {
      fail(`${file.name} is not a binary glTF (.glb) file. Keeping the current avatar.`);
      return;
    }
    try {
      installAvatar(await loader.parseAsync(data, ''), file.name);
    } catch (err) {
      fail(`${file.name} could not be loaded (${err.message || err}). Keeping the current avatar.`, err);
    }
  });
  element.querySelector('.avatar-reset').addEventListener('click', () => loadAvatarFromUrl(home.url, home.source));

  await loadAvatarFromUrl(home.url, home.source);
  watch('value', () => onFrame(props.value));
  if (props.value) onFrame(props.value);
})();
