// esbuild entry: three.js plus the addons the avatar uses, bundled into one ES module
// (static/vendor/three-bundle.js) so the browser needs a single `await import(url)`.
export * from 'three';
export { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
export { RoomEnvironment } from 'three/examples/jsm/environments/RoomEnvironment.js';
