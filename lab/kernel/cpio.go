package kernel

import (
	"bytes"
	"fmt"
	"io/fs"
)

// cpioWriter builds an uncompressed "newc" (SVR4, no CRC) cpio archive in memory, the format
// the kernel unpacks as an initramfs. It writes entries in the order given, so parents must
// come before their children.
type cpioWriter struct {
	buf bytes.Buffer
	ino uint32
}

// cpio mode bits (from <sys/stat.h>).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

func (w *cpioWriter) header(name string, mode uint32, size int, rdevMajor, rdevMinor uint32) {
	w.ino++
	nlink := uint32(1)
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// 13 fields of 8 hex digits after the magic: ino, mode, uid, gid, nlink, mtime, filesize,
	// devmajor, devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	fmt.Fprintf(&w.buf, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		w.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
}

// pad aligns the archive to 4 bytes, as newc requires after the name and after the data.
func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string, perm fs.FileMode) {
	w.header(name, cpioDir|uint32(perm.Perm()), 0, 0, 0)
}

func (w *cpioWriter) file(name string, perm fs.FileMode, data []byte) {
	w.header(name, cpioRegular|uint32(perm.Perm()), len(data), 0, 0)
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) symlink(name, target string) {
	w.header(name, cpioSymlink|0o777, len(target), 0, 0)
	w.buf.WriteString(target)
	w.pad()
}

func (w *cpioWriter) charDev(name string, perm fs.FileMode, major, minor uint32) {
	w.header(name, cpioCharDev|uint32(perm.Perm()), 0, major, minor)
}

// bytes closes the archive with the trailer entry and returns it.
func (w *cpioWriter) bytes() []byte {
	w.header("TRAILER!!!", 0, 0, 0, 0)
	return w.buf.Bytes()
}
