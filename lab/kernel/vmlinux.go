package kernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// ensureVmlinux returns the kernel image qemu should boot. Booting the compressed bzImage
// costs seconds under TCG (the x86 decompressor runs emulated), so once per kernel the
// uncompressed ELF is extracted next to it; qemu boots that directly through its PVH entry
// point. When extraction is not possible (no xz, no PVH note) it returns the bzImage and why.
func ensureVmlinux(ctx context.Context, vmlinuz, vmlinux string) (string, error) {
	if st, err := os.Stat(vmlinux); err == nil && st.Size() > 0 {
		return vmlinux, nil
	}
	if err := extractVmlinux(ctx, vmlinuz, vmlinux); err != nil {
		return vmlinuz, fmt.Errorf("booting the compressed kernel, which is slower under TCG: extract vmlinux: %w", err)
	}
	return vmlinux, nil
}

// extractVmlinux writes the ELF kernel inside the bzImage at vmlinuz to dst, checking that it
// has a PVH entry point.
func extractVmlinux(ctx context.Context, vmlinuz, dst string) error {
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	payload, err := bzImagePayload(img)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".vmlinux-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		xz, err := exec.LookPath("xz")
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, xz, "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(payload)
		var stderr bytes.Buffer
		cmd.Stdout = tmp
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("xz: %w: %s", err, stderr.Bytes())
		}
	case bytes.HasPrefix(payload, []byte("\x1f\x8b")):
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return err
		}
		zr.Multistream(false)
		if _, err := io.Copy(tmp, zr); err != nil {
			return err
		}
	default:
		return errors.New("bzImage payload: unsupported compression")
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := checkPVH(tmp.Name()); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// bzImagePayload returns the compressed kernel inside a bzImage, located by the boot protocol's
// setup header (payload_offset and payload_length, relative to the protected-mode code).
func bzImagePayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage")
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if off <= 0 || n <= 0 || start+off+n > len(img) {
		return nil, errors.New("bzImage: payload out of range")
	}
	return img[start+off : start+off+n], nil
}

// checkPVH fails unless the ELF at p carries XEN_ELFNOTE_PHYS32_ENTRY, which qemu needs to boot
// an ELF kernel.
func checkPVH(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	const xenElfnotePhys32Entry = 18
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(prog.Open())
		if err != nil {
			return err
		}
		for len(data) >= 12 {
			namesz := binary.LittleEndian.Uint32(data[0:])
			descsz := binary.LittleEndian.Uint32(data[4:])
			typ := binary.LittleEndian.Uint32(data[8:])
			nameEnd := 12 + int(align4(namesz))
			end := nameEnd + int(align4(descsz))
			if end > len(data) || nameEnd > len(data) {
				break
			}
			if typ == xenElfnotePhys32Entry && string(bytes.TrimRight(data[12:12+namesz], "\x00")) == "Xen" {
				return nil
			}
			data = data[end:]
		}
	}
	return errors.New("kernel ELF has no PVH entry point")
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }
