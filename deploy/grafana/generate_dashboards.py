"""Generate the two provisioned Grafana dashboards of DVC Hub from one readable description.

The JSON files in ``deploy/grafana/dashboards/`` are what Grafana loads and what is reviewed; this
script is how they are written, so that 40 panels stay consistent (datasource by uid, Vietnamese
titles, units, thresholds from the city's targets). Edit here, then run::

    python deploy/grafana/generate_dashboards.py

``tests/observability/test_dashboards.py`` fails when the JSON files differ from this script's output.
Panel titles and descriptions are Vietnamese: city officials read them (operators read docs/operations.md).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT_DIR = HERE / "dashboards"
UNITS_CSV = ROOT / "schemas" / "reference" / "units-thanhhoa-city-2021.csv"

#: Must equal the uid in provisioning/datasources/prometheus.yml.
DATASOURCE_UID = "dvchub-prometheus"
DS: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39

#: The period selection every domain query pins (one period_kind, one period).
PERIOD = 'period_kind="$period_kind", period="$period"'

LEVEL_NAMES = {
    "TOAN_TRINH": "Toàn trình (mức độ 4)",
    "MOT_PHAN": "Một phần (mức độ 3)",
    "KHONG_TRUC_TUYEN": "Không trực tuyến (mức độ 1, 2)",
}
TIER_NAMES = {"HUYEN": "Cấp thành phố", "XA": "Cấp phường, xã"}
INDICATOR_NAMES = {
    "2.1": "2.1 Giải quyết đúng hạn",
    "3.0": "3.0 Hồ sơ trực tuyến toàn trình",
    "3.2": "3.2 DVCTT phát sinh hồ sơ",
    "3.3": "3.3 Tỷ lệ hồ sơ trực tuyến",
    "3.6": "3.6 Thanh toán trực tuyến",
    "4.1": "4.1 Kết quả điện tử",
    "4.3": "4.3 Tái sử dụng dữ liệu số hóa",
    "5.4": "5.4 Mức độ hài lòng",
}


def unit_names() -> dict[str, str]:
    """GSO code -> display name, from the shipped unit registry."""
    with UNITS_CSV.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {r["ma_dvhc"]: f"{'Một cửa cấp thành phố' if r['cap'] == 'HUYEN' else r['ten']} ({r['ma_dvhc']})"
            for r in rows}


def value_map(names: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "value",
        "options": {code: {"text": text, "index": i} for i, (code, text) in enumerate(names.items())},
    }


def field_mapping(field: str, names: dict[str, str]) -> dict[str, Any]:
    """An override showing ``field``'s codes as names (levels, tiers, units, indicators)."""
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": "mappings", "value": [value_map(names)]}]}


def rename(field: str, title: str) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "displayName", "value": title}]}


def target(expr: str, ref: str = "A", legend: str = "", *, table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    if table:
        t.update({"instant": True, "range": False, "format": "table"})
    else:
        t.update({"instant": False, "range": True, "format": "time_series"})
    return t


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


class Board:
    """Lays panels out on Grafana's 24-column grid, left to right, top to bottom."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"id": self.next_id, "type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.next_id += 1
        self.y += 1

    def add(
        self,
        kind: str,
        title: str,
        description: str,
        targets: list[dict[str, Any]],
        *,
        w: int = 12,
        h: int = 8,
        unit: str = "short",
        steps: dict[str, Any] | None = None,
        minmax: tuple[float, float] | None = None,
        options: dict[str, Any] | None = None,
        overrides: list[dict[str, Any]] | None = None,
        mappings: list[dict[str, Any]] | None = None,
        transformations: list[dict[str, Any]] | None = None,
    ) -> None:
        defaults: dict[str, Any] = {"unit": unit, "decimals": 1 if unit == "percentunit" else None}
        defaults = {k: v for k, v in defaults.items() if v is not None}
        if steps:
            defaults["thresholds"] = steps
            defaults["color"] = {"mode": "thresholds"}
        if minmax:
            defaults["min"], defaults["max"] = minmax
        if mappings:
            defaults["mappings"] = mappings
        panel: dict[str, Any] = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": self._place(w, h),
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        self.next_id += 1


def stat_options() -> dict[str, Any]:
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background", "graphMode": "area", "textMode": "auto", "justifyMode": "auto"}


def table_options(sort_by: str | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        opts["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return opts


def merge_and_hide() -> list[dict[str, Any]]:
    return [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {"Time": True}, "indexByName": {}, "renameByName": {}}},
    ]


def dashboard(uid: str, title: str, description: str, board: Board, *, variables: list[dict[str, Any]],
              tags: list[str], time_from: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "monday",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables},
        "panels": board.panels,
    }


# --------------------------------------------------------------------------- DVCTT — Tổng quan


def overview() -> dict[str, Any]:
    units = unit_names()
    level_override = field_mapping("level", LEVEL_NAMES)
    tier_override = field_mapping("tier", TIER_NAMES)
    unit_override = field_mapping("unit", units)
    pct = "percentunit"
    b = Board()

    b.row("Toàn thành phố trong kỳ")
    b.add("stat", "Hồ sơ tiếp nhận", "Tổng số hồ sơ tiếp nhận trong kỳ (mọi kênh), cả cấp thành phố và 34 phường, xã.",
          [target(f"sum(city:dvchub_dossiers_received:sum{{{PERIOD}}})")], w=4, h=5, options=stat_options(),
          steps=thresholds((None, "blue")))
    b.add("stat", "Tỷ lệ hồ sơ trực tuyến", "Hồ sơ nộp trực tuyến ÷ tổng hồ sơ tiếp nhận trong kỳ. Mục tiêu ≥ 50%.",
          [target(f"city:dvchub_online_share:ratio{{{PERIOD}}}")], w=4, h=5, unit=pct, minmax=(0, 1),
          options=stat_options(), steps=thresholds((None, "red"), (0.5, "green")))
    b.add("stat", "Tỷ lệ giải quyết đúng hạn", "Hồ sơ giải quyết trước hạn và đúng hạn ÷ hồ sơ đã giải quyết trong kỳ.",
          [target(f"city:dvchub_on_time:ratio{{{PERIOD}}}")], w=4, h=5, unit=pct, minmax=(0, 1),
          options=stat_options(), steps=thresholds((None, "red"), (0.8, "yellow"), (0.95, "green")))
    b.add("stat", "Tỷ lệ TTHC toàn trình", "Số TTHC cung cấp toàn trình ÷ số TTHC cung cấp trực tuyến (một phần và "
          "toàn trình), hiện tại. Mục tiêu 75–90%.",
          [target("city:dvchub_level4_coverage:ratio")], w=4, h=5, unit=pct, minmax=(0, 1), options=stat_options(),
          steps=thresholds((None, "red"), (0.75, "green"), (0.9, "blue")))
    b.add("stat", "Hồ sơ quá hạn đang xử lý", "Hồ sơ chưa giải quyết xong và đã quá ngày hẹn trả, ngay lúc này.",
          [target("city:dvchub_dossiers_overdue_now:sum")], w=4, h=5, options=stat_options(),
          steps=thresholds((None, "green"), (1, "yellow"), (50, "red")))
    b.add("stat", "Hồ sơ đang xử lý", "Hồ sơ đã tiếp nhận, chưa giải quyết xong, ngay lúc này.",
          [target("sum(unit:dvchub_dossiers_open_now:sum)")], w=4, h=5, options=stat_options(),
          steps=thresholds((None, "blue")))

    b.row("Số liệu theo cấp và mức độ")
    b.add("table", "Hồ sơ theo cấp và mức độ dịch vụ",
          "Bảng tổng hợp của thành phố trong kỳ: hồ sơ tiếp nhận (mọi kênh), trong đó trực tuyến; hồ sơ đã giải "
          "quyết đúng hạn (gồm trước hạn) và quá hạn.",
          [
              target(f"sum by (tier, level) (tier_level_channel:dvchub_dossiers_received:sum{{{PERIOD}}})", "A",
                     table=True),
              target("sum by (tier, level) (tier_level_channel:dvchub_dossiers_received:sum"
                     f'{{channel="TRUC_TUYEN", {PERIOD}}})', "B", table=True),
              target("sum by (tier, level) (tier_level_timeliness:dvchub_dossiers_finished:sum"
                     f'{{timeliness=~"early|on_time", {PERIOD}}})', "C", table=True),
              target("sum by (tier, level) (tier_level_timeliness:dvchub_dossiers_finished:sum"
                     f'{{timeliness="late", {PERIOD}}})', "D", table=True),
          ],
          w=16, h=9, options=table_options(),
          overrides=[level_override, tier_override, rename("tier", "Cấp"), rename("level", "Mức độ"),
                     rename("Value #A", "Tiếp nhận"), rename("Value #B", "Trực tuyến"),
                     rename("Value #C", "Đúng hạn"), rename("Value #D", "Quá hạn")],
          transformations=merge_and_hide())
    b.add("table", "TTHC không phát sinh hồ sơ",
          "Số thủ tục hành chính cung cấp trực tuyến nhưng không có hồ sơ nào trong kỳ (càng thấp càng tốt).",
          [target(f"tier_level:dvchub_procedures_without_dossier:sum{{{PERIOD}}}", table=True)],
          w=8, h=9, options=table_options(),
          overrides=[level_override, tier_override, rename("tier", "Cấp"), rename("level", "Mức độ"),
                     rename("Value", "Số TTHC")],
          transformations=[{"id": "organize", "options": {
              "excludeByName": {"Time": True, "period": True, "period_kind": True, "__name__": True}}}])

    b.row("Tỷ lệ hồ sơ trực tuyến")
    b.add("timeseries", "Tỷ lệ hồ sơ trực tuyến theo cấp, so với mục tiêu 50%",
          "Hồ sơ trực tuyến ÷ tổng hồ sơ tiếp nhận trong kỳ, theo cấp; đường ngang là mục tiêu của thành phố.",
          [target(f"tier:dvchub_online_share:ratio{{{PERIOD}}}", "A", "{{tier}}"),
           target(f"city:dvchub_online_share:ratio{{{PERIOD}}}", "B", "Toàn thành phố"),
           target("target:dvchub_online_share:ratio", "C", "Mục tiêu")],
          w=12, h=9, unit=pct, minmax=(0, 1),
          overrides=[rename("HUYEN", TIER_NAMES["HUYEN"]), rename("XA", TIER_NAMES["XA"])])
    b.add("table", "Xếp hạng đơn vị theo tỷ lệ hồ sơ trực tuyến",
          "Các đơn vị sắp xếp theo tỷ lệ hồ sơ trực tuyến trong kỳ; màu đỏ là dưới mục tiêu 50%.",
          [target(f"unit:dvchub_online_share:ratio{{{PERIOD}}}", "A", table=True),
           target(f"unit:dvchub_dossiers_received:sum{{{PERIOD}}}", "B", table=True)],
          w=12, h=9, options=table_options("Tỷ lệ trực tuyến"),
          overrides=[unit_override, tier_override, rename("unit", "Đơn vị"), rename("tier", "Cấp"),
                     rename("Value #B", "Hồ sơ tiếp nhận"),
                     {"matcher": {"id": "byName", "options": "Value #A"}, "properties": [
                         {"id": "displayName", "value": "Tỷ lệ trực tuyến"}, {"id": "unit", "value": pct},
                         {"id": "decimals", "value": 1}, {"id": "min", "value": 0}, {"id": "max", "value": 1},
                         {"id": "thresholds", "value": thresholds((None, "red"), (0.5, "green"))},
                         {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}}]}],
          transformations=[{"id": "merge", "options": {}}, {"id": "organize", "options": {
              "excludeByName": {"Time": True, "period": True, "period_kind": True}}}])

    b.row("Mức độ cung cấp dịch vụ công trực tuyến")
    b.add("bargauge", "Tỷ lệ TTHC toàn trình theo cấp (mục tiêu 75–90%)",
          "Số TTHC cung cấp toàn trình ÷ số TTHC cung cấp trực tuyến, theo cấp và toàn thành phố.",
          [target("tier:dvchub_level4_coverage:ratio", "A", "{{tier}}"),
           target("city:dvchub_level4_coverage:ratio", "B", "Toàn thành phố")],
          w=8, h=8, unit=pct, minmax=(0, 1), steps=thresholds((None, "red"), (0.75, "green"), (0.9, "blue")),
          options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
          overrides=[rename("HUYEN", TIER_NAMES["HUYEN"]), rename("XA", TIER_NAMES["XA"])])
    b.add("stat", "Tỷ lệ TTHC trực tuyến (mức độ 3 trở lên)",
          "Số TTHC cung cấp trực tuyến (một phần hoặc toàn trình) ÷ tổng số TTHC. Mục tiêu 100%.",
          [target("city:dvchub_level3_coverage:ratio", "A", "Toàn thành phố"),
           target("tier:dvchub_level3_coverage:ratio", "B", "{{tier}}")],
          w=6, h=8, unit=pct, minmax=(0, 1), options=stat_options(),
          steps=thresholds((None, "red"), (1, "green")),
          overrides=[rename("HUYEN", TIER_NAMES["HUYEN"]), rename("XA", TIER_NAMES["XA"])])
    b.add("table", "TTHC trực tuyến theo đơn vị",
          "Số TTHC mỗi đơn vị cung cấp theo mức độ và tỷ lệ toàn trình của đơn vị.",
          [target('sum by (unit) (unit_level:dvchub_procedures_offered:max{level="MOT_PHAN"})', "A", table=True),
           target('sum by (unit) (unit_level:dvchub_procedures_offered:max{level="TOAN_TRINH"})', "B", table=True),
           target("max by (unit) (unit:dvchub_level4_coverage:ratio)", "C", table=True)],
          w=10, h=8, options=table_options("Tỷ lệ toàn trình"),
          overrides=[unit_override, rename("unit", "Đơn vị"), rename("Value #A", "Một phần"),
                     rename("Value #B", "Toàn trình"),
                     {"matcher": {"id": "byName", "options": "Value #C"}, "properties": [
                         {"id": "displayName", "value": "Tỷ lệ toàn trình"}, {"id": "unit", "value": pct},
                         {"id": "decimals", "value": 1},
                         {"id": "thresholds", "value": thresholds((None, "red"), (0.75, "green"), (0.9, "blue"))},
                         {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}],
          transformations=merge_and_hide())

    b.row("Hồ sơ quá hạn")
    b.add("table", "Đơn vị có nhiều hồ sơ quá hạn nhất",
          "Mười đơn vị có nhiều hồ sơ đang xử lý đã quá hạn nhất, ngay lúc này.",
          [target("topk(10, unit:dvchub_dossiers_overdue_now:sum)", "A", table=True),
           target("unit:dvchub_dossiers_open_now:sum", "B", table=True)],
          w=12, h=9, options=table_options("Quá hạn"),
          overrides=[unit_override, tier_override, rename("unit", "Đơn vị"), rename("tier", "Cấp"),
                     rename("Value #B", "Đang xử lý"),
                     {"matcher": {"id": "byName", "options": "Value #A"}, "properties": [
                         {"id": "displayName", "value": "Quá hạn"},
                         {"id": "thresholds", "value": thresholds((None, "green"), (1, "yellow"), (10, "red"))},
                         {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}],
          transformations=[{"id": "merge", "options": {}},
                           {"id": "filterByValue", "options": {"type": "exclude", "match": "any", "filters": [
                               {"fieldName": "Value #A", "config": {"id": "isNull", "options": {}}}]}},
                           {"id": "organize", "options": {"excludeByName": {"Time": True}}}])
    b.add("timeseries", "Hồ sơ quá hạn đang xử lý theo cấp",
          "Số hồ sơ đang xử lý đã quá hạn theo thời gian, theo cấp.",
          [target("tier:dvchub_dossiers_overdue_now:sum", "A", "{{tier}}")], w=12, h=9,
          overrides=[rename("HUYEN", TIER_NAMES["HUYEN"]), rename("XA", TIER_NAMES["XA"])])

    b.row("Chỉ số phục vụ người dân, doanh nghiệp (Quyết định 766/QĐ-TTg)")
    b.add("bargauge", "Điểm bình quân các đơn vị theo chỉ số",
          "Điểm trung bình của các đơn vị theo từng chỉ số Quyết định 766 trong kỳ.",
          [target(f"city_indicator:dvchub_kpi766_score:avg{{{PERIOD}}}", "A", "{{indicator}}")],
          w=10, h=9, unit="none",
          options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                   "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
          overrides=[rename(code, name) for code, name in INDICATOR_NAMES.items()])
    b.add("table", "Tỷ lệ theo đơn vị và chỉ số",
          "Tỷ lệ (0–100%) của từng đơn vị theo từng chỉ số Quyết định 766 trong kỳ.",
          [target(f"unit_indicator:dvchub_kpi766_rate:max{{{PERIOD}}}", table=True)],
          w=14, h=9, unit=pct, options=table_options(),
          overrides=[unit_override, tier_override, field_mapping("indicator", INDICATOR_NAMES),
                     rename("unit", "Đơn vị"), rename("tier", "Cấp"), rename("indicator", "Chỉ số"),
                     rename("Value", "Tỷ lệ")],
          transformations=[{"id": "organize", "options": {
              "excludeByName": {"Time": True, "period": True, "period_kind": True, "__name__": True}}}])

    variables = [
        {"type": "custom", "name": "period_kind", "label": "Loại kỳ",
         "query": "Quý : quarter, Tháng : month, Năm : year",
         "current": {"selected": True, "text": "Quý", "value": "quarter"}, "options": [], "hide": 0,
         "includeAll": False, "multi": False, "skipUrlSync": False},
        {"type": "query", "name": "period", "label": "Kỳ báo cáo", "datasource": DS,
         "query": {"query": 'label_values(city:dvchub_dossiers_received:sum{period_kind="$period_kind"}, period)',
                   "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "definition": 'label_values(city:dvchub_dossiers_received:sum{period_kind="$period_kind"}, period)',
         "refresh": 2, "sort": 2, "current": {}, "options": [], "hide": 0, "includeAll": False, "multi": False,
         "regex": "", "skipUrlSync": False},
    ]
    return dashboard("dvchub-tong-quan", "DVCTT — Tổng quan",
                     "Dịch vụ công trực tuyến của thành phố: hồ sơ theo cấp và mức độ, tỷ lệ trực tuyến, "
                     "mức độ cung cấp, hồ sơ quá hạn và chỉ số Quyết định 766.", b, variables=variables,
                     tags=["dvc-hub", "dvctt"], time_from="now-24h")


# --------------------------------------------------------------------------- Hub — Vận hành


def operations() -> dict[str, Any]:
    b = Board()
    ri = "$__rate_interval"
    per_s = "ops"

    b.row("Thu thập dữ liệu (connector)")
    b.add("stat", "Connector hoạt động tốt", "Tỷ lệ connector có lần lấy dữ liệu gần nhất thành công.",
          [target("hub:dvchub_connector_up:avg")], w=4, h=5, unit="percentunit", minmax=(0, 1),
          options=stat_options(), steps=thresholds((None, "red"), (0.9, "yellow"), (1, "green")))
    b.add("stat", "Connector đang lỗi", "Số connector có lần lấy dữ liệu gần nhất thất bại.",
          [target("count(dvchub_connector_up == 0) or vector(0)")], w=4, h=5, options=stat_options(),
          steps=thresholds((None, "green"), (1, "red")))
    b.add("timeseries", "Bản ghi thu thập mỗi giây theo loại nguồn",
          "Số bản ghi các connector đã ghi vào Kafka (được xác nhận), mỗi giây.",
          [target("type:dvchub_connector_records:rate5m", "A", "{{type}}")], w=8, h=5, unit=per_s)
    b.add("timeseries", "Lỗi connector theo lý do", "Số lỗi mỗi giây của connector, theo loại nguồn và lý do.",
          # "or vector(0)": a hub without a single error shows 0, not "No data" (the counter has no series yet).
          [target(f"sum by (type, reason) (rate(dvchub_connector_errors_total[{ri}])) or vector(0)", "A",
                  "{{type}} {{reason}}")],
          w=8, h=5, unit=per_s)
    b.add("table", "Trạng thái từng connector",
          "Từng connector: lần lấy gần nhất thành công hay không, con trỏ chậm hơn nguồn bao lâu, "
          "lần thành công gần nhất cách đây bao lâu.",
          [target("max by (connector, type) (dvchub_connector_up)", "A", table=True),
           target("max by (connector, type) (dvchub_connector_cursor_age_seconds)", "B", table=True),
           target("time() - max by (connector, type) (dvchub_connector_last_success_timestamp_seconds)", "C",
                  table=True)],
          w=16, h=10, options=table_options("Chậm hơn nguồn"),
          overrides=[rename("connector", "Connector"), rename("type", "Loại"),
                     {"matcher": {"id": "byName", "options": "Value #A"}, "properties": [
                         {"id": "displayName", "value": "Hoạt động"},
                         {"id": "mappings", "value": [{"type": "value", "options": {
                             "0": {"text": "Lỗi", "color": "red", "index": 0},
                             "1": {"text": "Tốt", "color": "green", "index": 1}}}]},
                         {"id": "custom.cellOptions", "value": {"type": "color-background"}}]},
                     {"matcher": {"id": "byName", "options": "Value #B"}, "properties": [
                         {"id": "displayName", "value": "Chậm hơn nguồn"}, {"id": "unit", "value": "s"}]},
                     {"matcher": {"id": "byName", "options": "Value #C"}, "properties": [
                         {"id": "displayName", "value": "Thành công gần nhất"}, {"id": "unit", "value": "s"}]}],
          transformations=merge_and_hide())
    b.add("timeseries", "Lượt lấy dữ liệu theo kết quả", "Số lượt poll mỗi giây theo loại nguồn và kết quả.",
          [target(f"sum by (type, outcome) (rate(dvchub_connector_polls_total[{ri}]))", "A", "{{type}} {{outcome}}")],
          w=8, h=10, unit=per_s)

    b.row("Xử lý luồng (worker)")
    b.add("stat", "Worker đang chạy", "Số worker Prometheus đọc được số liệu.",
          [target('sum(up{job="dvchub-worker"})')], w=4, h=6, options=stat_options(),
          steps=thresholds((None, "red"), (1, "green")))
    b.add("stat", "Hồ sơ trong trạng thái", "Số hồ sơ các worker đang giữ trạng thái.",
          [target("sum(dvchub_state_dossiers)")], w=4, h=6, options=stat_options(), steps=thresholds((None, "blue")))
    b.add("timeseries", "Độ trễ hàng đợi (consumer lag)",
          "Số bản ghi Kafka chưa được worker xử lý, theo nhóm tiêu thụ và topic.",
          [target("group_topic:dvchub_consumer_lag_records:sum", "A", "{{group}} {{topic}}")], w=8, h=6)
    b.add("timeseries", "Thông lượng xử lý", "Bản ghi vào và ra mỗi giây, theo agent.",
          [target("agent:dvchub_agent_records_in:rate5m", "A", "vào {{agent}}"),
           target("agent:dvchub_agent_records_out:rate5m", "B", "ra {{agent}}")], w=8, h=6, unit=per_s)
    b.add("timeseries", "Thời gian xử lý (p95)",
          "95% bản ghi được xử lý xong trong khoảng thời gian này, tính từ lúc vào Kafka.",
          [target("agent:dvchub_processing_latency_seconds:p95_5m", "A", "{{agent}}")], w=10, h=7, unit="s")
    b.add("timeseries", "Cập nhật trạng thái hồ sơ theo kết quả",
          "Sự kiện áp dụng vào trạng thái hồ sơ mỗi giây: áp dụng, cũ (bỏ qua), trùng (bỏ qua).",
          [target("outcome:dvchub_state_applies:rate5m", "A", "{{outcome}}")], w=10, h=7, unit=per_s)
    b.add("stat", "Đọc lại phân vùng (1 giờ)",
          "Số lần worker nhận bản ghi vượt quá vị trí cần đọc (thường ngay sau khi khởi động lại) và đã đọc lại "
          "phân vùng từ vị trí đó thay vì bỏ sót. Vài lần quanh một lần khởi động lại là bình thường.",
          [target("sum(increase(dvchub_consumer_rereads_total[1h]))")], w=4, h=7, options=stat_options(),
          steps=thresholds((None, "green"), (1, "blue"), (50, "yellow")))

    b.row("Hàng đợi lỗi (dead letter)")
    b.add("stat", "Bản ghi lỗi trong 1 giờ", "Số bản ghi bị chuyển vào topic lỗi trong 1 giờ qua.",
          [target("sum(increase(dvchub_dead_letters_total[1h]))")], w=4, h=7, options=stat_options(),
          steps=thresholds((None, "green"), (1, "yellow"), (100, "red")))
    b.add("stat", "Tỷ lệ bản ghi lỗi", "Bản ghi lỗi ÷ bản ghi worker tiêu thụ (5 phút).",
          [target("hub:dvchub_dead_letters:ratio_rate5m")], w=4, h=7, unit="percentunit", options=stat_options(),
          steps=thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")))
    b.add("timeseries", "Bản ghi lỗi theo giai đoạn và lý do", "Bản ghi lỗi mỗi giây theo giai đoạn và lý do.",
          [target("stage_reason:dvchub_dead_letters:rate5m", "A", "{{stage}} {{reason}}")], w=16, h=7, unit=per_s)

    b.row("Đồng bộ lên Cổng dịch vụ công tỉnh")
    b.add("stat", "Cầu dao kết nối Cổng", "Đóng: bình thường. Nửa mở: đang thử lại. Mở: tạm ngừng gửi vì Cổng lỗi.",
          [target("max(dvchub_portal_breaker_state)")], w=4, h=7, options=stat_options(),
          mappings=[{"type": "value", "options": {"0": {"text": "Đóng", "color": "green", "index": 0},
                                                   "1": {"text": "Nửa mở", "color": "yellow", "index": 1},
                                                   "2": {"text": "Mở", "color": "red", "index": 2}}}],
          steps=thresholds((None, "green"), (1, "yellow"), (2, "red")))
    b.add("timeseries", "Dữ liệu chờ đồng bộ lâu nhất", "Tuổi của mục lâu nhất chưa gửi được lên Cổng, theo loại.",
          [target("max by (kind) (dvchub_portal_oldest_unpushed_age_seconds)", "A", "{{kind}}")], w=6, h=7, unit="s")
    b.add("timeseries", "Lượt đồng bộ theo loại và kết quả", "Số lượt gửi lên Cổng mỗi giây theo loại và kết quả.",
          [target("kind_outcome:dvchub_portal_pushes:rate5m", "A", "{{kind}} {{outcome}}")], w=7, h=7, unit=per_s)
    b.add("timeseries", "Gửi lại theo lý do", "Số yêu cầu gửi lại mỗi giây theo loại và lý do (lỗi, 429, hết giờ...).",
          [target(f"sum by (kind, reason) (rate(dvchub_portal_retries_total[{ri}])) or vector(0)", "A",
                  "{{kind}} {{reason}}")],
          w=7, h=7, unit=per_s)

    return dashboard("dvchub-van-hanh", "Hub — Vận hành",
                     "Tình trạng vận hành của DVC Hub: connector, worker, hàng đợi lỗi và đồng bộ lên Cổng tỉnh.",
                     b, variables=[], tags=["dvc-hub", "operations"], time_from="now-3h")


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = {"dvctt-tong-quan.json": overview(), "hub-van-hanh.json": operations()}
    return {name: json.dumps(board, ensure_ascii=False, indent=2) + "\n" for name, board in boards.items()}


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {OUT_DIR / name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
