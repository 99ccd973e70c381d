// Images: the store's files with checksums, and uploads with a progress bar.
import { get, uploadImage } from '../api.js';
import { h, clear, td, bytes, rate, duration, relTime, announce, toast, errorBox } from '../ui.js';

export function render(main) {
  const tbody = h('tbody');
  const errorSlot = h('div');
  const fileInput = h('input', { id: 'image-file', name: 'file', type: 'file', required: true, 'aria-describedby': 'image-hint' });
  const uploadBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'upload' }, 'Upload');
  const cancelBtn = h('button', { type: 'button', class: 'btn', hidden: true }, 'Cancel');
  const bar = h('progress', { id: 'upload-progress', max: 100, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  // Not a live region: it changes many times a second; announce() reports every quarter.
  const status = h('p', { id: 'upload-status', class: 'small' });
  let current = null;

  const form = h('form', { id: 'upload-form', novalidate: true },
    h('div', { class: 'filters' },
      h('div', { class: 'field grow' },
        h('label', { for: 'image-file' }, 'Image file'),
        fileInput,
        h('span', { id: 'image-hint', class: 'hint' }, 'Platform and version are read from the file name (e.g. c2960x-universalk9-mz.152-7.E8.bin). MD5 and SHA-256 are computed while it streams to disk.')),
      h('div', { class: 'toolbar' }, uploadBtn, cancelBtn)),
    bar, status);

  main.append(
    h('div', { class: 'page-head' },
      h('div', null, h('h1', null, 'Images'), h('p', { class: 'muted' }, 'Firmware images that devices fetch from this service over TFTP or FTP.'))),
    h('section', { class: 'card', 'aria-labelledby': 'upload-title' }, h('h2', { id: 'upload-title' }, 'Upload an image'), form),
    errorSlot,
    h('section', { class: 'card', 'aria-labelledby': 'images-title' },
      h('h2', { id: 'images-title' }, 'Image store'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'responsive', id: 'images' },
          h('thead', null, h('tr', null, ['File', 'Platform', 'Version', 'Size', 'MD5', 'SHA-256', 'Added'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody))));

  let alive = true;
  async function load() {
    try {
      const { images } = await get('/images');
      if (!alive) return;
      errorSlot.replaceChildren();
      clear(tbody);
      for (const i of images) {
        tbody.append(h('tr', { dataset: { file: i.file_name } },
          td('File', h('span', { class: 'device-name mono' }, i.file_name)),
          td('Platform', i.platform || h('span', { class: 'muted' }, '–')),
          td('Version', i.version || h('span', { class: 'muted' }, '–')),
          td('Size', h('span', { class: 'nowrap', title: `${i.size} bytes` }, bytes(i.size))),
          h('td', { class: 'hash', 'data-label': 'MD5' }, i.md5),
          h('td', { class: 'hash', 'data-label': 'SHA-256' }, i.sha256),
          td('Added', relTime(i.created_at))));
      }
      if (images.length === 0) tbody.append(h('tr', null, h('td', { colspan: 7, class: 'empty' }, 'No image yet: upload one above.')));
    } catch (err) {
      if (alive && err.status !== 401) errorSlot.replaceChildren(errorBox(err, 'Cannot load the images'));
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      status.textContent = 'Choose a file first.';
      fileInput.focus();
      return;
    }
    uploadBtn.disabled = true;
    fileInput.disabled = true;
    cancelBtn.hidden = false;
    bar.hidden = false;
    bar.value = 0;
    const started = performance.now();
    let lastAnnounced = 0;
    current = uploadImage(file, (loaded, total) => {
      const pct = total ? (100 * loaded) / total : 0;
      bar.value = pct;
      const secs = (performance.now() - started) / 1000;
      const bps = secs > 0 ? loaded / secs : 0;
      const eta = bps > 0 && total ? (total - loaded) / bps : null;
      const text = `${file.name}: ${bytes(loaded)} of ${bytes(total)} (${Math.floor(pct)}%) · ${rate(bps)}${eta !== null && loaded < total ? ` · ETA ${duration(eta)}` : ''}`;
      bar.setAttribute('aria-valuetext', text);
      status.textContent = loaded === total ? `${file.name}: uploaded, computing checksums…` : text;
      if (pct - lastAnnounced >= 25) { lastAnnounced = pct; announce(`Upload ${Math.floor(pct)}%`); }
    });
    try {
      const rec = await current.promise;
      status.textContent = `${rec.file_name} added (${bytes(rec.size)}, MD5 ${rec.md5}).`;
      toast(`${rec.file_name} uploaded.`);
      form.reset();
      await load();
    } catch (err) {
      status.textContent = '';
      if (err.status !== 401) {
        status.append(h('span', { class: 'err' }, `Upload failed: ${err.message}`));
        announce(`Upload failed: ${err.message}`);
      }
    } finally {
      current = null;
      uploadBtn.disabled = false;
      fileInput.disabled = false;
      cancelBtn.hidden = true;
      bar.hidden = true;
    }
  });
  cancelBtn.addEventListener('click', () => { if (current) current.abort(); });

  load();
  return () => { alive = false; if (current) current.abort(); };
}
