"""The procedure catalogues of the Thanh Hóa City scenario (fixed, the same for every seed).

Counts at the report date 2021-03-31 (domain.md §6): the city desk offers 41 procedures at level 3
and 70 at level 4; every ward/commune 9 and 32. Both catalogues also hold level-2 procedures
(information only, in-person dossiers) and the same dated trio that keeps the online counts constant
over the whole scenario while the catalogue changes on :data:`CHANGE_AT` (2021-03-08):

- ``X``: a procedure whose level goes 3 -> 4 (two rows, ``HieuLucDen`` / ``HieuLucTu``);
- ``Y``: a new level-3 procedure (valid from the change);
- ``Z``: a level-4 procedure retired at the change (``HieuLucDen`` set).

A few online procedures have popularity 0 (never get a dossier), so "procedures that received no
dossier" (TTHC không phát sinh hồ sơ) is never trivially zero.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hub.scenario.generator import CatalogueRow
from hub.simulators.clock import TZ

__all__ = ["CATALOGUE_FROM", "CHANGE_AT", "ProcedureSpec", "city_procedures", "ward_procedures"]

#: Plain (unchanging) online procedures of the city desk; with X (now 4) and Y (3): 41 and 70.
CITY_PLAIN_LEVEL3 = 40
CITY_PLAIN_LEVEL4 = 69
#: Every catalogue row starts here (before the scenario, so any filing date has a level).
CATALOGUE_FROM = datetime(2019, 1, 1, tzinfo=TZ)
#: The day the catalogue changes (X 3 -> 4, Y added, Z retired): mid-quarter, so "level at filing" matters.
CHANGE_AT = datetime(2021, 3, 8, tzinfo=TZ)


@dataclass(frozen=True, slots=True)
class ProcedureSpec:
    """A procedure before it is placed in a unit's catalogue. ``role`` is "", "X", "Y" or "Z"."""

    code: str
    name: str
    field_code: str
    field_name: str
    level: int
    days: int
    weight: float
    has_fee: bool
    paper_result: bool
    fee: int
    role: str = ""

    def rows(self, unit: str, *, name_nfd: bool = False) -> list[CatalogueRow]:
        """The dated catalogue rows of this procedure at ``unit``."""
        before = CHANGE_AT - timedelta(seconds=1)

        def row(level: int, frm: datetime, to: datetime | None) -> CatalogueRow:
            return CatalogueRow(
                unit=unit,
                code=self.code,
                name=self.name,
                field_code=self.field_code,
                field_name=self.field_name,
                level=level,
                has_fee=self.has_fee,
                paper_result=self.paper_result,
                valid_from=frm,
                valid_to=to,
                days=self.days,
                weight=self.weight,
                fee=self.fee,
                name_nfd=name_nfd,
            )

        if self.role == "X":
            return [row(3, CATALOGUE_FROM, before), row(4, CHANGE_AT, None)]
        if self.role == "Y":
            return [row(self.level, CHANGE_AT, None)]
        if self.role == "Z":
            return [row(self.level, CATALOGUE_FROM, before)]
        return [row(self.level, CATALOGUE_FROM, None)]


# field code -> (field name, processing days, fee in VND (0 = none), paper result)
_FIELDS: dict[str, tuple[str, int, int, bool]] = {
    "HT": ("Hộ tịch", 3, 0, True),
    "CT": ("Chứng thực", 1, 10_000, True),
    "LDTBXH": ("Lao động - Thương binh và Xã hội", 10, 0, True),
    "VH": ("Văn hóa cơ sở", 10, 0, True),
    "DD": ("Đất đai", 15, 100_000, True),
    "TG": ("Tôn giáo", 20, 0, False),
    "GD": ("Giáo dục và Đào tạo", 15, 0, True),
    "NN": ("Nông nghiệp", 7, 0, False),
    "KNTC": ("Khiếu nại, tố cáo, tiếp công dân", 30, 0, False),
    "PBGDPL": ("Phổ biến, giáo dục pháp luật", 5, 0, False),
    "HKD": ("Thành lập và hoạt động của hộ kinh doanh, hợp tác xã", 3, 100_000, True),
    "XD": ("Hoạt động xây dựng", 15, 75_000, True),
    "CTH": ("Lưu thông hàng hóa trong nước", 10, 200_000, True),
    "ATTP": ("An toàn thực phẩm", 15, 500_000, True),
    "MT": ("Môi trường", 10, 0, True),
    "NV": ("Thi đua - Khen thưởng, tổ chức hội", 15, 0, False),
    "TC": ("Tài chính - Kế hoạch", 5, 0, True),
    "GT": ("Giao thông vận tải", 7, 0, True),
}

# Ward/commune catalogue: (field, level, days or 0 for the field's default, weight, role, name).
# 8 plain level 3 + X + Y; 31 plain level 4 + Z; 8 level 2.
_WARD: list[tuple[str, int, int, float, str, str]] = [
    ("HT", 4, 1, 10.0, "", "Đăng ký khai sinh"),
    ("HT", 4, 1, 6.0, "", "Đăng ký kết hôn"),
    ("HT", 4, 1, 4.0, "", "Đăng ký khai tử"),
    ("HT", 4, 3, 1.0, "", "Đăng ký nhận cha, mẹ, con"),
    ("HT", 4, 3, 0.8, "", "Đăng ký khai sinh kết hợp nhận cha, mẹ, con"),
    ("HT", 4, 3, 0.2, "", "Đăng ký giám hộ"),
    ("HT", 4, 2, 0.1, "", "Đăng ký chấm dứt giám hộ"),
    ("HT", 4, 3, 1.5, "", "Thay đổi, cải chính, bổ sung thông tin hộ tịch"),
    ("HT", 4, 5, 0.8, "", "Đăng ký lại khai sinh"),
    ("HT", 4, 5, 0.3, "", "Đăng ký lại kết hôn"),
    ("HT", 4, 5, 0.2, "", "Đăng ký lại khai tử"),
    ("HT", 4, 3, 5.0, "", "Cấp Giấy xác nhận tình trạng hôn nhân"),
    ("HT", 4, 1, 4.0, "", "Cấp bản sao Trích lục hộ tịch"),
    ("HT", 4, 3, 0.3, "", "Đăng ký khai sinh cho người đã có hồ sơ, giấy tờ cá nhân"),
    (
        "HT",
        4,
        5,
        2.0,
        "",
        "Liên thông đăng ký khai sinh, đăng ký thường trú, cấp thẻ bảo hiểm y tế cho trẻ em dưới 6 tuổi",
    ),
    ("HT", 4, 5, 0.6, "", "Liên thông đăng ký khai tử, xóa đăng ký thường trú, hưởng chế độ tử tuất"),
    ("CT", 4, 1, 3.0, "", "Chứng thực chữ ký trong các giấy tờ, văn bản"),
    ("CT", 4, 2, 0.2, "", "Chứng thực việc sửa đổi, bổ sung, hủy bỏ hợp đồng, giao dịch"),
    ("CT", 4, 2, 0.3, "", "Cấp bản sao có chứng thực từ bản chính hợp đồng, giao dịch đã được chứng thực"),
    ("LDTBXH", 4, 20, 1.2, "", "Thực hiện, điều chỉnh, thôi hưởng trợ cấp xã hội hàng tháng"),
    ("LDTBXH", 4, 5, 0.6, "", "Hỗ trợ chi phí mai táng cho đối tượng bảo trợ xã hội"),
    ("LDTBXH", 4, 20, 0.5, "", "Xác định, xác định lại mức độ khuyết tật và cấp Giấy xác nhận khuyết tật"),
    ("LDTBXH", 4, 5, 0.2, "", "Đổi, cấp lại Giấy xác nhận khuyết tật"),
    ("LDTBXH", 4, 10, 0.3, "", "Công nhận hộ nghèo, hộ cận nghèo phát sinh trong năm"),
    ("LDTBXH", 4, 10, 0.2, "", "Công nhận hộ thoát nghèo, hộ thoát cận nghèo trong năm"),
    ("LDTBXH", 4, 7, 0.4, "", "Xác nhận hộ gia đình làm nông nghiệp, lâm nghiệp, ngư nghiệp có mức sống trung bình"),
    ("VH", 4, 10, 0.3, "", "Xét tặng danh hiệu Gia đình văn hóa hằng năm"),
    ("VH", 4, 10, 0.0, "", "Xét tặng Giấy khen Gia đình văn hóa"),
    ("VH", 4, 5, 0.0, "", "Đăng ký hoạt động thư viện tư nhân có vốn sách ban đầu từ 500 bản đến dưới 1.000 bản"),
    ("TG", 4, 5, 0.0, "", "Thông báo tổ chức quyên góp trong địa bàn một xã"),
    ("NN", 4, 5, 0.1, "", "Đăng ký kê khai số lượng chăn nuôi tập trung và nuôi trồng thủy sản ban đầu"),
    ("LDTBXH", 4, 3, 0.5, "Z", "Xác nhận đơn đề nghị cấp thẻ bảo hiểm y tế cho người thuộc hộ gia đình cận nghèo"),
    ("CT", 3, 1, 8.0, "", "Chứng thực bản sao từ bản chính giấy tờ, văn bản"),
    ("CT", 3, 2, 0.2, "", "Chứng thực di chúc"),
    ("CT", 3, 2, 0.3, "", "Chứng thực văn bản thỏa thuận phân chia di sản"),
    ("CT", 3, 2, 0.3, "", "Chứng thực văn bản khai nhận di sản"),
    ("DD", 3, 30, 0.3, "", "Hòa giải tranh chấp đất đai"),
    ("TG", 3, 20, 0.0, "", "Đăng ký sinh hoạt tôn giáo tập trung"),
    ("GD", 3, 15, 0.05, "", "Cho phép nhóm trẻ, lớp mẫu giáo độc lập hoạt động giáo dục"),
    ("KNTC", 3, 30, 0.1, "", "Giải quyết khiếu nại lần đầu"),
    ("CT", 3, 2, 1.0, "X", "Chứng thực hợp đồng, giao dịch liên quan đến tài sản là động sản"),
    ("CT", 3, 1, 2.0, "Y", "Cấp bản sao điện tử được chứng thực từ bản chính"),
    ("KNTC", 2, 0, 0.3, "", "Tiếp công dân tại cấp xã"),
    ("KNTC", 2, 0, 0.3, "", "Xử lý đơn tại cấp xã"),
    ("KNTC", 2, 0, 0.1, "", "Giải quyết tố cáo tại cấp xã"),
    ("PBGDPL", 2, 0, 0.1, "", "Công nhận tuyên truyền viên pháp luật"),
    ("PBGDPL", 2, 0, 0.05, "", "Thôi làm tuyên truyền viên pháp luật"),
    ("TG", 2, 0, 0.1, "", "Đăng ký hoạt động tín ngưỡng"),
    ("PBGDPL", 2, 0, 0.1, "", "Thủ tục bầu hòa giải viên"),
    ("PBGDPL", 2, 0, 0.05, "", "Thanh toán thù lao cho hòa giải viên"),
]

# City desk catalogue, by field: (field, default level, [names]); a leading "!" marks popularity 0,
# "3:" / "4:" / "2:" overrides the level of one name. 40 plain level 3 + X + Y; 69 plain level 4 + Z; level 2.
_CITY: list[tuple[str, int, list[str]]] = [
    (
        "HKD",
        4,
        [
            "Đăng ký thành lập hộ kinh doanh",
            "Đăng ký thay đổi nội dung đăng ký hộ kinh doanh",
            "Tạm ngừng hoạt động hộ kinh doanh",
            "Chấm dứt hoạt động hộ kinh doanh",
            "Cấp lại Giấy chứng nhận đăng ký hộ kinh doanh",
            "Đăng ký thành lập hợp tác xã",
            "Đăng ký thay đổi nội dung đăng ký hợp tác xã",
            "Giải thể tự nguyện hợp tác xã",
            "Đăng ký thành lập chi nhánh, văn phòng đại diện của hợp tác xã",
            "Tạm ngừng hoạt động của hợp tác xã",
            "Cấp lại giấy chứng nhận đăng ký hợp tác xã",
            "!Thông báo thay đổi nội dung đăng ký hợp tác xã",
        ],
    ),
    (
        "XD",
        3,
        [
            "Cấp giấy phép xây dựng nhà ở riêng lẻ",
            "Cấp giấy phép xây dựng sửa chữa, cải tạo công trình",
            "Điều chỉnh giấy phép xây dựng",
            "Gia hạn giấy phép xây dựng",
            "Cấp lại giấy phép xây dựng",
            "Cấp giấy phép di dời công trình",
            "Cấp giấy phép xây dựng có thời hạn",
            "Thẩm định thiết kế xây dựng triển khai sau thiết kế cơ sở",
            "Thẩm định dự án đầu tư xây dựng",
            "4:Cấp giấy phép chặt hạ, dịch chuyển cây xanh",
            "4:Cấp giấy phép xây dựng công trình quảng cáo",
            "4:Cung cấp thông tin về quy hoạch xây dựng",
            "!Thẩm định nhiệm vụ quy hoạch chi tiết",
        ],
    ),
    (
        "DD",
        3,
        [
            "Đăng ký biến động quyền sử dụng đất do chuyển nhượng",
            "Đăng ký biến động quyền sử dụng đất do tặng cho",
            "Đăng ký biến động quyền sử dụng đất do thừa kế",
            "Cấp đổi Giấy chứng nhận quyền sử dụng đất",
            "Cấp lại Giấy chứng nhận quyền sử dụng đất do bị mất",
            "Chuyển mục đích sử dụng đất phải được phép",
            "Đính chính Giấy chứng nhận đã cấp",
            "Tách thửa hoặc hợp thửa đất",
            "Gia hạn sử dụng đất ngoài khu công nghệ cao, khu kinh tế",
            "Đăng ký đất đai lần đầu",
            "Xóa đăng ký cho thuê, cho thuê lại quyền sử dụng đất",
            "Thu hồi Giấy chứng nhận đã cấp không đúng quy định",
            "4:Đăng ký thế chấp quyền sử dụng đất, tài sản gắn liền với đất",
            "4:Xóa đăng ký thế chấp",
            "4:Đăng ký thay đổi nội dung thế chấp đã đăng ký",
            "4:Cung cấp dữ liệu đất đai",
            "4:Đăng ký biến động do đổi tên, thay đổi thông tin người sử dụng đất",
            "Giải quyết tranh chấp đất đai thuộc thẩm quyền của Chủ tịch UBND cấp huyện",
        ],
    ),
    (
        "HT",
        4,
        [
            "Đăng ký khai sinh có yếu tố nước ngoài",
            "Đăng ký kết hôn có yếu tố nước ngoài",
            "Đăng ký khai tử có yếu tố nước ngoài",
            "Đăng ký nhận cha, mẹ, con có yếu tố nước ngoài",
            (
                "Ghi vào Sổ hộ tịch việc kết hôn của công dân Việt Nam đã được giải quyết tại cơ quan có thẩm quyền "
                "của nước ngoài"
            ),
            "Ghi vào Sổ hộ tịch việc ly hôn, hủy việc kết hôn đã được giải quyết tại nước ngoài",
            "Đăng ký giám hộ có yếu tố nước ngoài",
            "Thay đổi, cải chính, bổ sung hộ tịch, xác định lại dân tộc",
            "Đăng ký lại khai sinh có yếu tố nước ngoài",
            "Đăng ký lại kết hôn có yếu tố nước ngoài",
            "Cấp bản sao Trích lục hộ tịch (cấp huyện)",
            "!Đăng ký chấm dứt giám hộ có yếu tố nước ngoài",
        ],
    ),
    (
        "CT",
        4,
        [
            "Cấp bản sao từ sổ gốc",
            "Chứng thực bản sao từ bản chính giấy tờ do cơ quan nước ngoài cấp",
            "Chứng thực chữ ký người dịch mà người dịch là cộng tác viên dịch thuật",
            "Chứng thực chữ ký người dịch mà người dịch không phải là cộng tác viên dịch thuật",
            "Chứng thực việc sửa đổi, bổ sung, hủy bỏ hợp đồng, giao dịch (cấp huyện)",
            "3:Chứng thực bản sao từ bản chính giấy tờ, văn bản bằng tiếng nước ngoài",
            "3:Chứng thực chữ ký trong giấy tờ, văn bản bằng tiếng nước ngoài",
        ],
    ),
    (
        "GD",
        4,
        [
            "Thành lập trường mầm non công lập",
            "Cho phép trường mầm non hoạt động giáo dục",
            "Sáp nhập, chia, tách trường mầm non",
            "Giải thể trường mầm non",
            "Thành lập trường tiểu học công lập",
            "Cho phép trường tiểu học hoạt động giáo dục",
            "Thành lập trường trung học cơ sở công lập",
            "Cho phép trường trung học cơ sở hoạt động giáo dục",
            "Chuyển trường đối với học sinh trung học cơ sở",
            "Xét, duyệt chính sách hỗ trợ đối với học sinh bán trú",
            "Tiếp nhận học sinh Việt Nam về nước học trung học cơ sở",
            "!Giải thể trường trung học cơ sở",
            "3:Cho phép trung tâm học tập cộng đồng hoạt động trở lại",
            "3:Đăng ký hoạt động giáo dục kỹ năng sống",
        ],
    ),
    (
        "VH",
        4,
        [
            "Cấp giấy phép kinh doanh dịch vụ karaoke",
            "Điều chỉnh giấy phép kinh doanh dịch vụ karaoke",
            "Công nhận Tổ dân phố văn hóa",
            "Công nhận Phường, thị trấn đạt chuẩn văn minh đô thị",
            "Thông báo tổ chức lễ hội",
            "Đăng ký tổ chức lễ hội",
            "Công nhận Cơ quan, đơn vị, doanh nghiệp đạt chuẩn văn hóa",
            "3:Cấp giấy phép kinh doanh dịch vụ vũ trường",
            "3:Thông báo tổ chức biểu diễn nghệ thuật",
        ],
    ),
    (
        "CTH",
        4,
        [
            "Cấp Giấy phép bán lẻ rượu",
            "Cấp sửa đổi, bổ sung Giấy phép bán lẻ rượu",
            "Cấp lại Giấy phép bán lẻ rượu",
            "Cấp Giấy phép sản xuất rượu thủ công nhằm mục đích kinh doanh",
            "Cấp Giấy phép bán lẻ sản phẩm thuốc lá",
            "Cấp lại Giấy phép bán lẻ sản phẩm thuốc lá",
            "Cấp Giấy chứng nhận đủ điều kiện cửa hàng bán lẻ LPG chai",
            "3:Cấp Giấy phép kinh doanh bán lẻ sản phẩm khí",
        ],
    ),
    (
        "ATTP",
        4,
        [
            "Cấp Giấy chứng nhận cơ sở đủ điều kiện an toàn thực phẩm đối với cơ sở kinh doanh dịch vụ ăn uống",
            "Cấp lại Giấy chứng nhận cơ sở đủ điều kiện an toàn thực phẩm",
            "Cấp Giấy chứng nhận cơ sở đủ điều kiện an toàn thực phẩm nông lâm thủy sản",
            "3:Xác nhận kiến thức về an toàn thực phẩm",
        ],
    ),
    (
        "LDTBXH",
        3,
        [
            "Giải quyết trợ cấp một lần đối với người có thành tích tham gia kháng chiến",
            "Cấp giấy xác nhận thân nhân của người có công",
            "Hưởng mai táng phí, trợ cấp một lần khi người có công từ trần",
            "Đăng ký thành lập cơ sở trợ giúp xã hội ngoài công lập",
            "Tiếp nhận đối tượng bảo trợ xã hội có hoàn cảnh đặc biệt khó khăn vào cơ sở trợ giúp xã hội",
            "Quyết định trợ cấp xã hội hàng tháng khi đối tượng thay đổi nơi cư trú",
            "4:Hỗ trợ học văn hóa, học nghề, trợ cấp khó khăn ban đầu cho nạn nhân bị mua bán",
            "4:Cấp giấy phép thành lập cơ sở hỗ trợ nạn nhân",
            "4:Đổi, cấp lại Giấy xác nhận khuyết tật (cấp huyện)",
            "4:Thực hiện chế độ ưu đãi trong giáo dục đào tạo đối với người có công",
            "4:Cấp thẻ bảo hiểm y tế cho người có công và thân nhân",
            "4:Hỗ trợ người lao động tạm hoãn hợp đồng lao động",
            "4:Hỗ trợ hộ kinh doanh phải dừng hoạt động do dịch COVID-19",
        ],
    ),
    (
        "MT",
        3,
        [
            "Xác nhận đăng ký kế hoạch bảo vệ môi trường",
            "Xác nhận đề án bảo vệ môi trường đơn giản",
            "Tham vấn ý kiến trong quá trình thực hiện đánh giá tác động môi trường",
            "4:Đăng ký khai thác nước dưới đất",
            "4:Cung cấp thông tin, dữ liệu tài nguyên và môi trường",
        ],
    ),
    (
        "TC",
        3,
        [
            "Đăng ký mã số đơn vị có quan hệ với ngân sách",
            "Thẩm định quyết toán dự án hoàn thành",
            "Mua hóa đơn lẻ",
            "4:Cấp mã số cho dự án đầu tư xây dựng cơ bản",
            "4:Đăng ký giá",
        ],
    ),
    (
        "GT",
        3,
        [
            "Cấp phép thi công công trình trên đường đô thị",
            "Cấp phép sử dụng tạm thời một phần lòng đường, hè phố",
            "Chấp thuận xây dựng công trình thiết yếu trong phạm vi bảo vệ kết cấu hạ tầng giao thông",
            "4:Đăng ký phương tiện thủy nội địa",
            "4:Xóa đăng ký phương tiện thủy nội địa",
        ],
    ),
    (
        "NV",
        2,
        [
            "Tặng danh hiệu Lao động tiên tiến",
            "Tặng Giấy khen của Chủ tịch UBND cấp huyện về thành tích thi đua theo đợt",
            "Tặng danh hiệu Chiến sĩ thi đua cơ sở",
            "Công nhận ban vận động thành lập hội",
            "Thành lập hội",
            "Phê duyệt điều lệ hội",
            "Chia, tách, sáp nhập, hợp nhất hội",
            "Giải thể hội",
            "Báo cáo tổ chức đại hội nhiệm kỳ",
            "Tặng Giấy khen về thành tích đột xuất",
            "Tặng danh hiệu Tập thể lao động tiên tiến",
            "Công nhận hội đồng quản lý quỹ",
            "Thủ tục hiệp y chức danh",
            "Xét chuyển công chức cấp xã thành công chức cấp huyện",
            "Tiếp công dân tại cấp huyện",
            "Xử lý đơn tại cấp huyện",
            "Giải quyết tố cáo tại cấp huyện",
            "Giải quyết khiếu nại lần đầu tại cấp huyện",
            "Công nhận báo cáo viên pháp luật",
            "Đăng ký hoạt động tín ngưỡng (cấp huyện)",
            "3:Đề nghị sinh hoạt tôn giáo tập trung có người nước ngoài",
            "3:Đăng ký bổ sung hoạt động tín ngưỡng",
            "3:Đăng ký sửa đổi hiến chương của tổ chức tôn giáo cơ sở",
            "3:Thông báo thuyên chuyển chức sắc, chức việc",
            "3:Đề nghị tổ chức cuộc lễ ngoài cơ sở tôn giáo",
            "3:Thông báo tổ chức hội nghị thường niên của tổ chức tôn giáo",
            "3:Đề nghị giảng đạo ngoài địa bàn phụ trách",
            "3:Thông báo danh mục hoạt động tôn giáo đối với tổ chức có địa bàn hoạt động ở một huyện",
            "3:Đăng ký người được bổ nhiệm, bầu cử, suy cử làm chức việc",
            "!3:Thông báo hủy kết quả phong phẩm",
            "!3:Đề nghị thay đổi trụ sở của tổ chức tôn giáo cơ sở",
        ],
    ),
    (
        "NN",
        3,
        [
            "Hỗ trợ khôi phục sản xuất vùng bị thiệt hại do thiên tai",
            "Phê duyệt kế hoạch khuyến nông địa phương",
            "4:Xác nhận bảng kê lâm sản",
            "4:Cấp giấy chứng nhận kinh tế trang trại",
            "4:Công nhận làng nghề truyền thống",
            "4:Hỗ trợ dự án liên kết sản xuất",
        ],
    ),
]

# The city's X/Y/Z trio.
_CITY_TRIO: list[tuple[str, int, int, float, str, str]] = [
    ("XD", 3, 15, 1.5, "X", "Cấp giấy phép xây dựng đối với công trình không theo tuyến"),
    ("HKD", 3, 3, 2.0, "Y", "Đăng ký hộ kinh doanh qua mạng điện tử sử dụng chữ ký số"),
    ("DD", 4, 10, 0.8, "Z", "Đăng ký văn bản thông báo về việc xử lý tài sản thế chấp"),
]

# Popularity of the city's fields (in-person and online draws are weighted by it).
_CITY_FIELD_WEIGHT = {
    "HKD": 3.0,
    "XD": 2.5,
    "DD": 4.0,
    "HT": 0.6,
    "CT": 1.0,
    "GD": 0.5,
    "VH": 0.4,
    "CTH": 0.8,
    "ATTP": 0.8,
    "LDTBXH": 1.2,
    "MT": 0.3,
    "TC": 0.4,
    "GT": 0.5,
    "NV": 0.3,
    "NN": 0.3,
}


def _spec(code: str, field: str, level: int, days: int, weight: float, role: str, name: str) -> ProcedureSpec:  # noqa: PLR0917 - mirrors the table columns
    fname, fdays, fee, paper = _FIELDS[field]
    return ProcedureSpec(
        code=code,
        name=name,
        field_code=field,
        field_name=fname,
        level=level,
        days=days or fdays,
        weight=weight,
        has_fee=fee > 0,
        paper_result=paper,
        fee=fee,
        role=role,
    )


def ward_procedures() -> list[ProcedureSpec]:
    """The ward/commune catalogue template (the same codes in every ward: provincial procedure codes)."""
    return [
        _spec(f"1.{3001 + 17 * i:06d}.000.00.00.H56", field, level, days, weight, role, name)
        for i, (field, level, days, weight, role, name) in enumerate(_WARD)
    ]


def city_procedures() -> list[ProcedureSpec]:
    """The city desk's catalogue."""
    out: list[ProcedureSpec] = []
    i = 0
    for field, default_level, names in _CITY:
        for rank, raw in enumerate(names):
            text = raw
            dormant = text.startswith("!")
            text = text.removeprefix("!")
            level = default_level
            if len(text) > 2 and text[1] == ":" and text[0] in "234":
                level, text = int(text[0]), text[2:]
            weight = 0.0 if dormant else _CITY_FIELD_WEIGHT[field] / (1.0 + 0.35 * rank)
            out.append(_spec(f"2.{1003 + 13 * i:06d}.000.00.00.H56", field, level, 0, weight, "", text))
            i += 1
    for field, level, days, weight, role, name in _CITY_TRIO:
        out.append(_spec(f"2.{1003 + 13 * i:06d}.000.00.00.H56", field, level, days, weight, role, name))
        i += 1
    # The lists above name more online procedures than the city offered online in 2021: the least
    # popular ones beyond the reported counts stay at level 2 (information only). Dormant ones stay
    # online so that "procedures with no dossier" keeps them.
    for level, wanted in ((3, CITY_PLAIN_LEVEL3), (4, CITY_PLAIN_LEVEL4)):
        plain = [k for k, p in enumerate(out) if p.level == level and not p.role and p.weight > 0]
        excess = sum(1 for p in out if p.level == level and not p.role) - wanted
        for k in sorted(plain, key=lambda k: (out[k].weight, k))[: max(0, excess)]:
            out[k] = replace(out[k], level=2)
    return out
