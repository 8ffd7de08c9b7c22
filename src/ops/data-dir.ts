import { lstatSync, mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from '../config.js';

/**
 * The directories only this server's user may touch: EXECD_DATA_DIR (job
 * output beyond memory, the Redis backend's mirror files) and
 * EXECD_INSTANCE_DIR (the records of start-up recovery). Each is created at
 * start, mode 0700, and refused with one line when another user owns it or
 * can write to it: anyone who can write there could plant a symlink the
 * server would write through, or a record that makes it kill their choice of
 * processes.
 *
 * Inside the data directory every instance keeps its files in a directory of
 * its own, `<data dir>/<instance id>/`, created at start and removed at a
 * clean shutdown; start-up recovery removes those of instances found dead
 * (ops/recovery.ts), never a live one's.
 */

/**
 * Create `dir` (0700, with its parents) unless it exists, then refuse it unless it is a directory of this user that
 * no one else can write.
 */
export function preparePrivateDir(dir: string, setting: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`invalid setting ${setting}: cannot create ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  checkPrivateDir(dir, setting);
}

function checkPrivateDir(dir: string, setting: string): void {
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw new ConfigError(`invalid setting ${setting}: ${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid) {
    throw new ConfigError(`invalid setting ${setting}: ${dir} belongs to uid ${st.uid}, not to this server's uid ${uid}`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new ConfigError(`invalid setting ${setting}: ${dir} is writable by other users; give a directory only this server's user can write (mode 0700)`);
  }
}

/** Where an instance keeps its files. */
export interface InstanceFiles {
  /** The data directory: EXECD_DATA_DIR, or a fresh one made for this instance. */
  dataDir: string;
  /** True when `dataDir` was made for this instance alone (EXECD_DATA_DIR unset): it goes with the instance. */
  ownDataDir: boolean;
  /** `<dataDir>/<instance id>`: this instance's output files, and nobody else's. */
  filesDir: string;
}

/** The prefix of the data directories made when EXECD_DATA_DIR is unset: `<tmpdir>/execd-XXXXXX` (mkdtemp). */
const OWN_DATA_DIR = /^execd-[A-Za-z0-9]{6}$/;

/**
 * Make this instance's files directory at start: under EXECD_DATA_DIR (checked
 * as above), or, when it is unset, under a fresh directory with an unguessable
 * name (mkdtemp, 0700) that nobody can have prepared beforehand.
 */
export function prepareInstanceFiles(dataDir: string | undefined, instanceId: string): InstanceFiles {
  let dir: string;
  if (dataDir === undefined) {
    try {
      dir = mkdtempSync(join(tmpdir(), 'execd-'));
    } catch (err) {
      throw new ConfigError(`invalid setting EXECD_DATA_DIR: cannot create a data directory under ${tmpdir()} (${(err as NodeJS.ErrnoException).code ?? 'error'}); set EXECD_DATA_DIR`);
    }
    checkPrivateDir(dir, 'EXECD_DATA_DIR');
  } else {
    dir = resolve(dataDir);
    preparePrivateDir(dir, 'EXECD_DATA_DIR');
  }
  const filesDir = join(dir, instanceId);
  try {
    mkdirSync(filesDir, { mode: 0o700 }); // not recursive: a directory already there is not ours (EEXIST)
  } catch (err) {
    throw new ConfigError(`invalid setting EXECD_DATA_DIR: cannot create ${filesDir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return { dataDir: dir, ownDataDir: dataDir === undefined, filesDir };
}

/**
 * Remove an instance's files (after a clean shutdown, or once recovery found
 * it dead): its directory, and the data directory too when that was made for
 * it alone. Only what has the shape this module gives it, owned by this user:
 * a record naming anything else is left alone.
 */
export function removeInstanceFiles(files: Pick<InstanceFiles, 'filesDir' | 'ownDataDir'>, instanceId: string): boolean {
  const { filesDir } = files;
  if (!isAbsolute(filesDir) || basename(filesDir) !== instanceId || !ownedDirectory(filesDir)) return false;
  rmSync(filesDir, { recursive: true, force: true }); // rm does not follow symlinks: what they point to stays
  const dataDir = dirname(filesDir);
  if (files.ownDataDir && OWN_DATA_DIR.test(basename(dataDir)) && ownedDirectory(dataDir)) {
    try {
      rmdirSync(dataDir); // only when empty
    } catch {
      // not empty: not only ours
    }
  }
  return true;
}

function ownedDirectory(path: string): boolean {
  try {
    const st = lstatSync(path);
    return st.isDirectory() && st.uid === (process.getuid?.() ?? st.uid);
  } catch {
    return false;
  }
}
