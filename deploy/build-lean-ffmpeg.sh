#!/usr/bin/env bash
# A lean ffmpeg for recordings' web versions (TONGKE_RECORDING_FFMPEG, docs/deployment.md): the
# distribution's own FFmpeg source package, built with only what tongke runs and libx264,
# libvpx and libopus linked in statically from the distribution's -dev packages, so a run
# maps ~8 MiB of its own pages instead of ~44 MiB of ~170 shared libraries. Same encoders,
# same output byte for byte (docs/recordings-measurements.md, 2026-12-06).
#
#   deploy/build-lean-ffmpeg.sh [PREFIX]     # installs PREFIX/bin/ffmpeg (/opt/tongke-ffmpeg)
#
# Debian or Ubuntu with apt; needs gcc, make and pkg-config (apt-get install build-essential
# pkg-config). Nothing is installed into the system: the source comes through a private apt
# list of deb-src entries for the mirrors apt already uses, the libraries are unpacked here.
set -euo pipefail
prefix=${1:-/opt/tongke-ffmpeg}
for tool in gcc make pkg-config apt-get dpkg-source; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# deb-src entries for the distribution's own mirrors (not third-party repositories)
mkdir -p apt/parts apt/lists/partial
: >apt/src.list
for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$list" ] && sed -n -E '/(debian|ubuntu)/I s/^deb[[:space:]]+/deb-src /p' "$list" >>apt/src.list
done
for sources in /etc/apt/sources.list.d/*.sources; do
  [ -f "$sources" ] && grep -qiE 'debian|ubuntu' "$sources" \
    && sed -E 's/^Types:.*/Types: deb-src/' "$sources" >"apt/parts/$(basename "$sources")"
done
apt=(-o "Dir::Etc::SourceList=$work/apt/src.list" -o "Dir::Etc::SourceParts=$work/apt/parts"
     -o "Dir::State::Lists=$work/apt/lists")
apt-get "${apt[@]}" update >/dev/null
# the same version as the system's ffmpeg where there is one: the same output as it
version=$(dpkg-query -W -f='${Version}' ffmpeg 2>/dev/null || true)
apt-get "${apt[@]}" source --download-only "ffmpeg${version:+=$version}"
dpkg-source -x ffmpeg_*.dsc src >/dev/null

# the encoders' libraries as static archives, and the assembler, unpacked (not installed)
apt-get download libx264-dev libvpx-dev libopus-dev nasm
for deb in ./*.deb; do dpkg -x "$deb" root; done
lib=$(dirname "$(find "$work/root" -name libx264.a | head -n 1)")
rm -f "$lib"/libx264.so "$lib"/libvpx.so "$lib"/libopus.so  # link the .a, not the .so
for pc in "$lib"/pkgconfig/{x264,vpx,opus}.pc; do
  sed -i -E "s#^prefix=.*#prefix=$work/root/usr#; s#^libdir=.*#libdir=$lib#;
    s#^includedir=.*#includedir=$work/root/usr/include#; s#-L/usr/lib[^ ]*#-L$lib#" "$pc"
done
export PATH="$work/root/usr/bin:$PATH" PKG_CONFIG_PATH="$lib/pkgconfig"

cd src
# what processing, live HLS, meeting composition and previews run (recordings/*.py), lavfi
# sources (the benchmarks' and tests') and every built-in filter; no hardware, network, X11
# or other external libraries
./configure --pkg-config-flags=--static --enable-gpl --enable-static --disable-shared \
  --enable-libx264 --enable-libvpx --enable-libopus \
  --disable-doc --disable-ffplay --disable-ffprobe --disable-autodetect --disable-everything \
  --disable-network --enable-protocols --enable-filters --enable-bsfs --enable-indev=lavfi \
  --enable-demuxer=matroska,webm_dash_manifest,hls,mov,lavfi,image2,mpegts,aac,h264,wav,ogg,concat,mjpeg,pcm_s16le,pcm_f32le,rawvideo \
  --enable-muxer=hls,mp4,mov,ipod,null,webm,matroska,image2,mpegts,wav,ogg,opus,adts,h264,pcm_s16le,pcm_f32le,rawvideo,segment,webm_chunk,framemd5,md5,mjpeg,image2pipe \
  --enable-decoder=vp8,vp9,opus,h264,aac,mjpeg,png,rawvideo,libopus,'pcm_*' \
  --enable-encoder=libx264,aac,mjpeg,wrapped_avframe,rawvideo,png,libvpx_vp8,libvpx_vp9,libopus,'pcm_*' \
  --enable-parser=vp8,vp9,opus,h264,aac,mjpeg,png >configure.out
make -j"$(nproc)" ffmpeg >make.log 2>&1 || { tail -n 30 make.log >&2; exit 1; }
# named ffmpeg: the benchmarks' memory sampler and the tests' stray-process check go by name
install -D -m 0755 ffmpeg "$prefix/bin/ffmpeg"
# read whole first: grep -q or head closing the pipe early would fail it under pipefail
encoders=$("$prefix/bin/ffmpeg" -hide_banner -encoders)
grep -q ' libx264 ' <<<"$encoders" || { echo "error: the build has no libx264" >&2; exit 1; }
banner=$("$prefix/bin/ffmpeg" -hide_banner -version)
echo "${banner%%$'\n'*}"
echo "installed $prefix/bin/ffmpeg: set TONGKE_RECORDING_FFMPEG=$prefix/bin/ffmpeg"
